"""JOBS.toml: a matrix of models x export settings, with shared defaults and per-entry overrides.

    [batch]      timeout_s, recycle_after, stages ("export": train/compress/export/validate; "all")
    [defaults]   any job sections (train, export, validate, profile, ...) shared by every job
    [matrix]     models (zoo names, pkg.mod:factory, .onnx files and globs), variants, and export
                 settings given as lists, one job per combination (opset = [17, 18])
    [[entry]]    model = GLOB plus job sections and job keys (inputs, weights, seed) for the models it matches

Every job is validated exactly as `edgepipe run` validates a job file.
"""

from __future__ import annotations

import copy
import fnmatch
import glob
import itertools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from models.errors import ConfigError
from pipeline.core.config import ExportSection, JobConfig, validate_job
from pipeline.core.user_data import is_function_ref

BATCH_KEYS = {"timeout_s", "recycle_after", "stages", "name"}
JOB_KEYS = {"inputs", "weights", "seed"}
SECTIONS = {"train", "compress", "export", "validate", "profile", "gate"}


@dataclass(frozen=True)
class BatchSettings:
    """How the batch runs its jobs."""

    name: str = "batch"
    timeout_s: float = 1800.0
    recycle_after: int = 25
    stages: str = "export"


@dataclass(frozen=True)
class BatchJob:
    """One job of the matrix."""

    name: str
    job: JobConfig


def load_batch(path: Path) -> tuple[BatchSettings, list[BatchJob]]:
    """Read JOBS.toml and expand its matrix; relative model paths and globs are taken from its folder."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"batch file {path} not found; see examples/batch.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_batch(data, Path(path).parent, str(path))


def parse_batch(data: dict, base: Path, where: str) -> tuple[BatchSettings, list[BatchJob]]:
    """Settings and jobs from parsed TOML."""
    _known(data, {"batch", "defaults", "matrix", "entry"}, where)
    settings = _settings(data.get("batch", {}), f"{where}: [batch]")
    defaults = data.get("defaults", {})
    _known(defaults, SECTIONS, f"{where}: [defaults]")
    matrix = data.get("matrix")
    if not isinstance(matrix, dict) or not matrix.get("models"):
        raise ConfigError(f"{where}: [matrix] needs models = [...] (zoo names, pkg.mod:factory, .onnx files or globs)")
    axes = {key: value for key, value in matrix.items() if key not in ("models", "variants")}
    for key, values in axes.items():
        if key not in ExportSection.model_fields or not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where}: [matrix].{key}: an axis must be a non-empty list of an [export] setting "
                f"({', '.join(k for k in ExportSection.model_fields if k != 'variants')})"
            )
    entries = data.get("entry", [])
    for i, entry in enumerate(entries):
        _known(entry, {"model"} | JOB_KEYS | SECTIONS, f"{where}: entry[{i}]")
    jobs = []
    for model in _models(matrix["models"], base, where):
        for combo in itertools.product(*axes.values()):
            jobs.append(
                _job(
                    model,
                    dict(zip(axes, combo)),
                    matrix.get("variants"),
                    defaults,
                    entries,
                    base,
                    where,
                    suffix="-".join(f"{k}{v}" for k, v in zip(axes, combo) if len(axes[k]) > 1),
                )
            )
    _unique(jobs, where)
    unmatched = [e["model"] for e in entries if not any(fnmatch.fnmatchcase(j.job.job.model, e["model"]) for j in jobs)]
    if unmatched:
        raise ConfigError(f"{where}: entry model {unmatched[0]!r} matches no model of the matrix")
    return settings, jobs


def _job(
    model: str, axis: dict, variants, defaults: dict, entries: list[dict], base: Path, where: str, suffix: str
) -> BatchJob:
    data = copy.deepcopy(defaults)
    export = data.setdefault("export", {})
    if variants is not None:
        export["variants"] = variants
    export.update(axis)
    job_keys = {}
    for entry in (e for e in entries if fnmatch.fnmatchcase(model, e["model"])):
        for key, value in entry.items():
            if key in SECTIONS:
                data.setdefault(key, {}).update(value)
            elif key in JOB_KEYS:
                job_keys[key] = value
    # files named in the batch file are read from its folder, as model paths are
    if data.get("validate", {}).get("inputs"):
        data["validate"]["inputs"] = str(base / data["validate"]["inputs"])
    if job_keys.get("weights"):
        job_keys["weights"] = str(base / job_keys["weights"])
    for section, key in (("export", "calibration"), ("validate", "eval_data")):
        source = data.get(section, {}).get(key)
        if isinstance(source, str) and source and not is_function_ref(source):
            data[section][key] = str(base / source)
    name = _name(model) + (f"-{suffix}" if suffix else "")
    data["job"] = {"name": name, "model": model, **job_keys}
    return BatchJob(name, validate_job(data, f"{where} (job {name})"))


def _models(patterns: list, base: Path, where: str) -> list[str]:
    """Zoo names and factories as given; .onnx paths and globs resolved against the batch file's folder."""
    models = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ConfigError(f"{where}: [matrix].models holds {pattern!r}; expected strings")
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


def _settings(table: dict, where: str) -> BatchSettings:
    _known(table, BATCH_KEYS, where)
    settings = BatchSettings(**table)
    if settings.stages not in ("export", "all"):
        raise ConfigError(f"{where}.stages = {settings.stages!r}: expected 'export' (up to validation) or 'all'")
    if not (isinstance(settings.timeout_s, (int, float)) and settings.timeout_s > 0):
        raise ConfigError(f"{where}.timeout_s = {settings.timeout_s!r}: expected seconds above 0")
    if not (isinstance(settings.recycle_after, int) and settings.recycle_after >= 1):
        raise ConfigError(f"{where}.recycle_after = {settings.recycle_after!r}: expected a whole number >= 1")
    return settings


def _known(table, known: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")
