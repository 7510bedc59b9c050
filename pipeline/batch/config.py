"""JOBS.toml: a matrix of models x export settings, with shared defaults and per-entry overrides.

    [batch]      timeout_s, recycle_after, stages ("export": train/compress/export/validate; "all")
    [defaults]   any job sections (train, export, validate, profile, ...) shared by every job
    [matrix]     models (zoo names, pkg.mod:factory, .onnx files and globs), variants, and export
                 settings given as lists, one job per combination (opset = [17, 18])
    [[entry]]    model = GLOB plus job sections and job keys (inputs, weights, seed) for the models it matches

The file is checked by the pydantic models below (`BatchFile`), then every job is validated
exactly as `edgepipe run` validates a job file.
"""

from __future__ import annotations

import copy
import fnmatch
import glob
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, create_model

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.core.config import ExportSection, JobConfig, TfliteVariant, validate_job
from edgepipe.pipeline.core.toml_config import STRICT, checked, read_toml
from edgepipe.pipeline.core.user_data import is_function_ref

JOB_KEYS = ("inputs", "weights", "seed")


class BatchSettings(BaseModel):
    """[batch]: how the batch runs its jobs."""

    model_config = STRICT
    name: str = Field("batch", min_length=1)
    timeout_s: float = Field(1800.0, gt=0)  # per job
    recycle_after: int = Field(25, ge=1)  # jobs per warm worker before it is replaced
    stages: Literal["export", "all"] = "export"  # "export": up to validation


class Sections(BaseModel):
    """Job sections shared by the jobs they apply to; each is checked with its job, as `edgepipe run` checks it."""

    model_config = STRICT
    train: dict | None = None
    compress: dict | None = None
    export: dict | None = None
    validate_: dict | None = Field(None, alias="validate")
    profile: dict | None = None
    gate: dict | None = None

    def given(self) -> dict[str, dict]:
        """The sections set here, keyed as in the file."""
        tables = self.model_dump(by_alias=True, include={"train", "compress", "export", "validate_", "profile", "gate"})
        return {k: v for k, v in tables.items() if v is not None}


class Entry(Sections):
    """[[entry]]: settings for the models matching a glob."""

    model: str = Field(min_length=1)
    inputs: list[str] | None = None
    weights: str | None = None
    seed: int | None = None


class _MatrixKeys(BaseModel):
    model_config = STRICT
    models: list[str] = Field(min_length=1)
    variants: list[TfliteVariant] | None = None

    def axes(self) -> dict[str, list]:
        """The export settings given as lists, in the order [export] declares them."""
        return {
            k: getattr(self, k) for k in type(self).model_fields if k in self.model_fields_set - {"models", "variants"}
        }


# [matrix]: models x variants x any [export] setting given as a non-empty list (opset = [17, 18]).
Matrix = create_model(
    "Matrix",
    __base__=_MatrixKeys,
    **{name: (list | None, Field(None, min_length=1)) for name in ExportSection.model_fields if name != "variants"},
)


class BatchFile(BaseModel):
    """A whole JOBS.toml."""

    model_config = STRICT
    batch: BatchSettings = BatchSettings()
    defaults: Sections = Sections()
    matrix: Matrix
    entry: list[Entry] = []


@dataclass(frozen=True)
class BatchJob:
    """One job of the matrix."""

    name: str
    job: JobConfig


def load_batch(path: Path) -> tuple[BatchSettings, list[BatchJob]]:
    """Read JOBS.toml and expand its matrix; relative model paths and globs are taken from its folder."""
    return parse_batch(read_toml(path, "see examples/batch.toml"), Path(path).parent, str(path))


def parse_batch(data: dict, base: Path, where: str) -> tuple[BatchSettings, list[BatchJob]]:
    """Settings and jobs from parsed TOML."""
    file = checked(BatchFile, data, where)
    axes = file.matrix.axes()
    jobs = []
    for model in _models(file.matrix.models, base, where):
        for combo in itertools.product(*axes.values()):
            jobs.append(
                _job(
                    model,
                    dict(zip(axes, combo)),
                    file,
                    base,
                    where,
                    suffix="-".join(f"{k}{v}" for k, v in zip(axes, combo) if len(axes[k]) > 1),
                )
            )
    _unique(jobs, where)
    unmatched = [e.model for e in file.entry if not any(fnmatch.fnmatchcase(j.job.job.model, e.model) for j in jobs)]
    if unmatched:
        raise ConfigError(f"{where}: entry model {unmatched[0]!r} matches no model of the matrix")
    return file.batch, jobs


def _job(model: str, axis: dict, file: BatchFile, base: Path, where: str, suffix: str) -> BatchJob:
    data = copy.deepcopy(file.defaults.given())
    export = data.setdefault("export", {})
    if file.matrix.variants is not None:
        export["variants"] = file.matrix.variants
    export.update(axis)
    job_keys = {}
    for entry in (e for e in file.entry if fnmatch.fnmatchcase(model, e.model)):
        for section, table in entry.given().items():
            data.setdefault(section, {}).update(table)
        job_keys.update({key: getattr(entry, key) for key in JOB_KEYS if getattr(entry, key) is not None})
    # files named in the batch file are read from its folder, as model paths are
    if data.get("validate", {}).get("inputs"):
        data["validate"]["inputs"] = str(base / data["validate"]["inputs"])
    if job_keys.get("weights"):
        job_keys["weights"] = str(base / job_keys["weights"])
    for section, key in (("export", "calibration"), ("validate", "eval_data"), ("train", "data")):
        source = data.get(section, {}).get(key)
        if isinstance(source, str) and source and not is_function_ref(source):
            data[section][key] = str(base / source)
    name = _name(model) + (f"-{suffix}" if suffix else "")
    data["job"] = {"name": name, "model": model, **job_keys}
    return BatchJob(name, validate_job(data, f"{where} (job {name})"))


def _models(patterns: list[str], base: Path, where: str) -> list[str]:
    """Zoo names and factories as given; .onnx paths and globs resolved against the batch file's folder."""
    models = []
    for pattern in patterns:
        if not pattern.endswith(".onnx"):
            models.append(pattern)
            continue
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        found = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not found:
            raise ConfigError(f"{where}: [matrix].models pattern {pattern!r} matches no .onnx file under {base}")
        models += [str(Path(f).resolve()) for f in found]
    return list(dict.fromkeys(models))


def _name(model: str) -> str:
    stem = Path(model).stem if model.endswith(".onnx") else model.replace(":", "_")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def _unique(jobs: list[BatchJob], where: str) -> None:
    seen: dict[str, str] = {}
    for job in jobs:
        if job.name in seen:
            raise ConfigError(
                f"{where}: two jobs would both be named {job.name!r} ({seen[job.name]} and "
                f"{job.job.job.model}); rename one of the files"
            )
        seen[job.name] = job.job.job.model
