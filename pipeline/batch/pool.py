"""Warm worker processes for batch jobs: TensorFlow and onnx2tf imported once, each job isolated.

A worker that crashes or exceeds the job timeout is killed and replaced, and only its job fails.
Workers are replaced after `recycle_after` jobs to bound memory growth, and die with the batch
(PR_SET_PDEATHSIG), so a killed batch never leaves a worker writing into a run directory.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable

WARM_IMPORTS = ("torch", "onnx", "onnxruntime", "tensorflow", "onnx2tf")


@dataclass(frozen=True)
class Task:
    """One job for a worker: the validated job as a dict (picklable), where it runs, which stages."""

    name: str
    job: dict
    run_dir: str
    only: tuple[str, ...] | None
    force: bool = False


def run_task(task: Task) -> dict:
    """Run one job in this process; every failure becomes a 'failed' outcome with its reason."""
    from edgepipe.models.shared.errors import EdgepipeError
    from edgepipe.pipeline.core.config import validate_job
    from edgepipe.pipeline.core.runner import run_job

    start = time.perf_counter()
    try:
        job = validate_job(task.job, task.name)
        if task.force:
            Path(task.run_dir, "manifest.json").unlink(missing_ok=True)  # nothing recorded: every stage runs again
        result = run_job(job, Path(task.run_dir), only=task.only)
        ran = [name for name, record in result.stages.items() if not record["cached"]]
        outcome = {
            "status": "done" if ran else "cached",
            "stages_run": ran,
            "stages_cached": [name for name in result.stages if name not in ran],
        }
    except EdgepipeError as exc:
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a bug or a library crash in one job must not end the batch
        outcome = {
            "status": "failed",
            "error": f"internal error: {type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
    return {
        "job": task.name,
        **outcome,
        "seconds": time.perf_counter() - start,
        "pid": os.getpid(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker_main(conn: Connection, log_path: str, threads: int) -> None:
    """A worker: die with the parent, send noise to its log, import the heavy stack once, then serve tasks.

    threads is the worker's share of the cores, read (as OMP_NUM_THREADS) by every stage that may use
    several: more compute threads than free cores slow every worker down.
    """
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _die_with_parent()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for module in WARM_IMPORTS:
        try:
            __import__(module)
        except Exception as exc:  # the job that needs it will say what is wrong
            print(f"warm import of {module} failed: {exc}", flush=True)
    conn.send({"ready": os.getpid()})  # the job clock starts here, not during the warm-up
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(run_task(task))


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: workers still end when their pipe closes


@dataclass
class _Worker:
    process: mp.Process
    conn: Connection
    log: Path
    jobs: int = 0
    ready: bool = False  # warm imports done
    task: Task | None = None
    started: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class WarmPool:
    """N warm workers running tasks; outcomes go to on_done as they finish."""

    workers: int
    timeout_s: float
    recycle_after: int
    log_dir: Path
    stats: list[dict] = field(default_factory=list)  # one entry per worker that ever ran: pid, jobs, peak RSS
    _started: int = 0

    def run(
        self, tasks: list[Task], on_done: Callable[[dict], None], on_start: Callable[[Task], None] = lambda task: None
    ) -> None:
        """Run every task; returns when each has an outcome."""
        queue, pool = deque(tasks), []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            while queue or any(w.task for w in pool):
                pool = [w for w in pool if w.process.is_alive() or w.task]
                while queue and len(pool) < self.workers:
                    pool.append(self._start())
                for worker in (w for w in pool if w.task is None and queue):
                    worker.task, worker.started = queue.popleft(), time.monotonic()
                    worker.conn.send(worker.task)
                    on_start(worker.task)
                self._collect(pool, on_done)
        finally:
            for worker in pool:
                self._stop(worker)

    def _collect(self, pool: list[_Worker], on_done: Callable[[dict], None]) -> None:
        busy = {w.conn: w for w in pool if w.task}
        deadline = min((w.started + self.timeout_s for w in busy.values() if w.ready), default=time.monotonic() + 1)
        for conn in wait(list(busy), timeout=max(0.0, deadline - time.monotonic())):
            worker = busy[conn]
            try:
                outcome = conn.recv()
            except (EOFError, OSError):
                worker.process.join(timeout=5)
                code = worker.process.exitcode
                outcome = {
                    "job": worker.task.name,
                    "status": "failed",
                    "pid": worker.process.pid,
                    "error": f"worker crashed (exit {code}{_signal_name(code)}) while running this job; "
                    f"see {worker.log}",
                }
                self._stop(worker)
            else:
                if "ready" in outcome:
                    worker.ready, worker.started = True, time.monotonic()
                    continue
                worker.jobs += 1
                worker.peak_rss_mb = max(worker.peak_rss_mb, outcome.get("peak_rss_mb", 0))
            worker.task = None
            on_done(outcome)
            if worker.jobs >= self.recycle_after:
                self._stop(worker)
        for worker in busy.values():
            if worker.task and worker.ready and time.monotonic() - worker.started > self.timeout_s:
                on_done(
                    {
                        "job": worker.task.name,
                        "status": "failed",
                        "pid": worker.process.pid,
                        "error": f"exceeded the {self.timeout_s:g} s job timeout; its worker was killed",
                        "seconds": time.monotonic() - worker.started,
                    }
                )
                worker.task = None
                self._stop(worker)

    def _start(self) -> _Worker:
        """A new worker; it warms up while the others work (its first task waits in its pipe)."""
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._started += 1
        threads = max(1, len(os.sched_getaffinity(0)) // self.workers)
        process = ctx.Process(
            target=_worker_main,
            args=(child, str(self._log(self._started)), threads),
            name=f"edgepipe-worker-{self._started}",
        )
        process.start()
        child.close()
        return _Worker(process, parent, log=self._log(self._started))

    def _stop(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        if worker.process.pid not in {s["pid"] for s in self.stats}:
            self.stats.append(
                {
                    "pid": worker.process.pid,
                    "jobs": worker.jobs,
                    "peak_rss_mb": worker.peak_rss_mb,
                    "log": str(worker.log),
                }
            )
        worker.task = None

    def _log(self, number: int) -> Path:
        return self.log_dir / f"worker-{number}.log"


def _signal_name(code: int | None) -> str:
    if code is None or code >= 0:
        return ""
    try:
        return f", {signal.Signals(-code).name}"
    except ValueError:
        return ""
