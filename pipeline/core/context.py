"""What every stage function receives, and how the model source of a job is resolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class StageContext:
    """Inputs of one stage: the job, the run's store, a staging dir for outputs, earlier results."""

    job: JobConfig
    store: Store
    staging: Path
    results: Mapping[str, dict]  # DeclaredResults in a run

    def path(self, name: str) -> Path:
        """An artifact of an earlier stage, inside the run directory."""
        return self.store.run_dir / name


def onnx_source(job: JobConfig) -> Path | None:
    """The user's ONNX file when the job's model is one, else None."""
    return Path(job.job.model) if model_kind(job.job.model) == "onnx" else None


def source_kind(job: JobConfig) -> str:
    """'onnx' for an ONNX file, 'factory' for 'pkg.module:factory', else 'zoo'."""
    return model_kind(job.job.model)


def model_kind(model: str) -> str:
    """What a [job] model names: 'onnx' for an ONNX file, 'factory' for 'pkg.module:factory', else 'zoo'."""
    if model.endswith(".onnx"):
        return "onnx"
    return "factory" if ":" in model else "zoo"
