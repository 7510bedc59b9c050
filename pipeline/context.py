"""What every stage function receives, and how the model source of a job is resolved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import JobConfig
from pipeline.store import Store


@dataclass(frozen=True)
class StageContext:
    """Inputs of one stage: the job, the run's store, a staging dir for outputs, earlier results."""

    job: JobConfig
    store: Store
    staging: Path
    results: dict[str, dict]

    def path(self, name: str) -> Path:
        """An artifact of an earlier stage, inside the run directory."""
        return self.store.run_dir / name


def onnx_source(job: JobConfig) -> Path | None:
    """The user's ONNX file when the job's model is one, else None."""
    return Path(job.job.model) if job.job.model.endswith(".onnx") else None


def source_kind(job: JobConfig) -> str:
    """'onnx' for an ONNX file, 'factory' for 'pkg.module:factory', else 'zoo'."""
    if onnx_source(job) is not None:
        return "onnx"
    return "factory" if ":" in job.job.model else "zoo"
