"""`edgepipe batch`: every job of a matrix, cached, resumable, on warm local workers or on Ray.

Layout under -o DIR: runs/<job>-<hash8>/ (one run directory per job, cached stage by stage),
batch.json (the batch manifest, rewritten atomically after every job, so a killed batch leaves
a true record), summary.csv and summary.md, logs/worker-N.log. A job whose run directory is
complete is answered from it without starting a worker.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgepipe.models.shared.errors import OutputDirError
from edgepipe.pipeline.batch.config import BatchJob, BatchSettings, load_batch
from edgepipe.pipeline.batch.pool import Task, WarmPool
from edgepipe.pipeline.batch.summary import job_rows, write_summaries
from edgepipe.pipeline.core.runner import EXPORT_ONLY, cached_run, job_hash, tool_versions
from edgepipe.pipeline.core.store import prepare_run_dir, write_json

BATCH_MANIFEST = "batch.json"


@dataclass(frozen=True)
class BatchResult:
    """Where the batch wrote, and every job's outcome in matrix order."""

    out: Path
    outcomes: list[dict]
    workers: list[dict]

    @property
    def failed(self) -> list[dict]:
        return [o for o in self.outcomes if o["status"] == "failed"]


def run_batch(
    path: Path,
    out: Path,
    workers: int,
    executor: str = "local",
    force: bool = False,
    address: str | None = None,
    on_event: Callable[[str, dict], None] = lambda kind, info: None,
) -> BatchResult:
    """Run a batch file's jobs; cached ones are answered at once, the rest go to the executor."""
    settings, jobs = load_batch(path)
    out = prepare_run_dir(out)
    with _exclusive(out):
        only = EXPORT_ONLY if settings.stages == "export" else None
        versions = tool_versions()
        state = {job.name: _entry(job, out) for job in jobs}
        tasks = []
        for job in jobs:
            run_dir = out / state[job.name]["run_dir"]
            cached = None if force else cached_run(job.job, run_dir, only, versions)
            if cached is not None:
                state[job.name].update(status="cached", stages_cached=list(cached.stages), seconds=0.0)
                on_event("done", state[job.name])
            else:
                tasks.append(Task(job.name, job.job.to_toml_dict(), str(run_dir), only, force))
        on_event("planned", {"jobs": len(jobs), "to_run": len(tasks)})
        pool_stats: list[dict] = []
        _save(out, settings, state, pool_stats)

        def done(outcome: dict) -> None:
            state[outcome["job"]].update({k: v for k, v in outcome.items() if k != "job"})
            _save(out, settings, state, pool_stats)
            on_event("done", state[outcome["job"]])

        def started(task: Task) -> None:
            on_event("start", state[task.name])

        if executor == "ray":
            from edgepipe.pipeline.batch.ray_executor import run_on_ray

            run_on_ray(tasks, address, settings.timeout_s, done, started)
        else:
            pool = WarmPool(workers, settings.timeout_s, settings.recycle_after, out / "logs")
            pool.run(tasks, done, started)
            pool_stats.extend(pool.stats)
        _save(out, settings, state, pool_stats)
        outcomes = [state[job.name] for job in jobs]
        write_summaries(out, [row for o in outcomes for row in job_rows(o, out)])
        return BatchResult(out, outcomes, pool_stats)


def _entry(job: BatchJob, out: Path) -> dict:
    return {
        "job": job.name,
        "model": job.job.job.model,
        "status": "queued",
        "run_dir": f"runs/{job.name}-{job_hash(job.job)[:8]}",
    }


def _save(out: Path, settings: BatchSettings, state: dict, workers: list[dict]) -> None:
    """batch.json, written whole: the record a rerun and `edgepipe gate` read."""
    runs = list(state.values())
    counts = {status: sum(r["status"] == status for r in runs) for status in ("done", "cached", "failed", "queued")}
    write_json(
        out / BATCH_MANIFEST,
        {
            "batch": settings.name,
            "settings": vars(settings),
            "counts": counts,
            "runs": runs,
            "workers": workers,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


class _exclusive:
    """One batch per output directory at a time: two would write the same run directories."""

    def __init__(self, out: Path):
        self.path = out / ".batch.lock"

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise OutputDirError(
                f"another edgepipe batch is writing to {self.path.parent}; wait for it or choose another -o DIR"
            ) from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
