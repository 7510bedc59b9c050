"""What every stage function receives, and how the model source of a job is resolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from edgepipe.pipeline.core.config import JobConfig
from edgepipe.pipeline.core.store import Store


class DeclaredResults(Mapping):
    """The results of the stages a stage declares it reads (runner.Stage.reads), and no others.

    A stage's cache key covers only what it declares, so reading anything else would let a cached
    result go stale silently: that read raises instead. A declared stage that did not run in this
    job (compress for a user's model) is simply absent.
    """

    def __init__(self, stage: str, declared: tuple[str, ...], results: dict[str, dict]):
        self._stage, self._declared = stage, declared
        self._results = {name: results[name] for name in declared if name in results}

    def __getitem__(self, name: str) -> dict:
        if name not in self._declared:
            raise RuntimeError(
                f"stage {self._stage!r} reads the {name!r} result, which it does not declare "
                f"(it declares {', '.join(self._declared) or 'none'}): "
                "add it to its Stage.reads in pipeline/core/runner.py"
            )
        return self._results[name]

    def get(self, name: str, default=None):
        return self[name] if name in self._results or name not in self._declared else default

    def __iter__(self):
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


def covers(declared: tuple[str, ...], path: str) -> bool:
    """True when one of the declared setting paths is `path` or a section (or table) holding it."""
    return any(path == d or path.startswith(f"{d}.") for d in declared)


class DeclaredSettings:
    """The job settings a stage declares it reads (runner.Stage.settings and key_free), and no others.

    It answers like the JobConfig it wraps: `job.export.opset`, or by TOML key `job["validate"]["inputs"]`
    (as RunView.job). A stage's cache key covers only what it declares, so reading any other setting
    would let a cached result go stale silently: that read raises instead, in every run, whichever
    helper makes it. A declared section or table is answered with the config's own frozen object
    (everything in it is declared); a section declared in part is answered with another view.
    """

    def __init__(self, stage: str, declared: tuple[str, ...], config: BaseModel, path: str = ""):
        self._stage, self._declared, self._config, self._path = stage, declared, config, path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy, pickle and the like probe for these; a setting is never one
            raise AttributeError(name)
        model = type(self._config)
        if name in model.model_fields:
            return self._read(name, model.model_fields[name].alias or name)
        derived = getattr(model, name, None)
        if isinstance(derived, property):  # e.g. compress.active: its settings are read through this view
            return derived.fget(self)
        if derived is not None:  # model_dump() and the like read every setting at once
            raise RuntimeError(
                f"stage {self._stage!r} calls {name} on the settings of {self._path or 'the job'}, of which it "
                f"declares only {', '.join(self._declared)}: read the settings one by one, or declare "
                f"{self._path or 'them'} whole in its Stage.settings in pipeline/core/runner.py"
            )
        raise AttributeError(f"{self._where(name)}: no such setting")

    def __getitem__(self, key: str) -> Any:
        """A setting by its TOML key, its value as the manifest records it."""
        name = next((n for n, f in type(self._config).model_fields.items() if (f.alias or n) == key), key)
        value = getattr(self, name)
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True)
        return value if isinstance(value, DeclaredSettings) else to_jsonable_python(value)

    def _read(self, name: str, key: str) -> Any:
        path = self._where(key)
        value = getattr(self._config, name)
        if covers(self._declared, path):
            return value
        if isinstance(value, BaseModel) and any(d.startswith(f"{path}.") for d in self._declared):
            return DeclaredSettings(self._stage, self._declared, value, path)
        raise RuntimeError(
            f"stage {self._stage!r} reads the setting {path!r}, which it does not declare "
            f"(it declares {', '.join(self._declared) or 'none'}): add it to its Stage.settings in "
            "pipeline/core/runner.py (or to Stage.key_free when none of the stage's files depends on it)"
        )

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key


# A job's settings as a helper receives them: the whole config, or the part a stage declares.
JobSettings = JobConfig | DeclaredSettings


@dataclass(frozen=True)
class StageContext:
    """Inputs of one stage: its settings of the job, the run's store, a staging dir for outputs, earlier results."""

    job: JobSettings  # DeclaredSettings in a run
    store: Store
    staging: Path
    results: Mapping[str, dict]  # DeclaredResults in a run

    def path(self, name: str) -> Path:
        """An artifact of an earlier stage, inside the run directory."""
        return self.store.run_dir / name


def onnx_source(job: JobSettings) -> Path | None:
    """The user's ONNX file when the job's model is one, else None."""
    return Path(job.job.model) if model_kind(job.job.model) == "onnx" else None


def source_kind(job: JobSettings) -> str:
    """'onnx' for an ONNX file, 'factory' for 'pkg.module:factory', else 'zoo'."""
    return model_kind(job.job.model)


def model_kind(model: str) -> str:
    """What a [job] model names: 'onnx' for an ONNX file, 'factory' for 'pkg.module:factory', else 'zoo'."""
    if model.endswith(".onnx"):
        return "onnx"
    return "factory" if ":" in model else "zoo"
