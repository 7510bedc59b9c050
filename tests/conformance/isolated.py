"""Run one call per item on warm spawned workers with a per-item timeout: a hung or crashed item fails alone.

Each worker imports the heavy modules once, then serves items one at a time over a pipe; a worker
that runs past the timeout or dies is killed and replaced, and its item gets `failed(item, why)`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable

READY = "ready"
WARM_UP_S = 600  # importing TensorFlow on a loaded single core


@dataclass
class _Worker:
    process: Any
    conn: Any
    ready: bool = False
    item: int | None = None  # index of the item it is running
    since: float = field(default_factory=time.perf_counter)

    def limit(self, timeout_s: float) -> float:
        """Seconds left before this worker counts as hung."""
        return (timeout_s if self.ready else WARM_UP_S) - (time.perf_counter() - self.since)


def _serve(conn, warm: tuple[str, ...]) -> None:
    for module in warm:
        importlib.import_module(module)
    conn.send(READY)
    while (job := conn.recv()) is not None:
        fn, args = job
        conn.send(fn(*args))


def _start(warm: tuple[str, ...]) -> _Worker:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(child, warm), daemon=True)
    process.start()
    child.close()
    return _Worker(process, parent)


def _stop(worker: _Worker) -> None:
    worker.process.kill()
    worker.process.join()
    worker.conn.close()


def _receive(worker: _Worker, timeout_s: float) -> tuple[str, Any]:
    """("ready" | "result" | "failed" | "busy", result or reason) for a warming or busy worker."""
    try:
        if worker.conn.poll():
            message = worker.conn.recv()
            return ("ready", None) if message == READY else ("result", message)
    except (EOFError, OSError):
        return "failed", "worker process died (crash or out of memory)"
    if worker.limit(timeout_s) > 0:
        return "busy", None
    return "failed", f"timed out after {timeout_s:.0f} s" if worker.ready else "worker did not warm up"


def run_isolated(
    fn: Callable,
    args: list[tuple],
    failed: Callable[[tuple, str, float], Any],
    timeout_s: float,
    workers: int = 1,
    warm: tuple[str, ...] = (),
    progress: Callable[[Any], None] | None = None,
) -> list:
    """fn(*a) for each a in args, in order of args; failed(a, reason, seconds) stands in for a timeout or a crash."""
    results: dict[int, Any] = {}
    pending = list(range(len(args)))
    pool = [_start(warm) for _ in range(min(workers, len(args)))]
    try:
        while len(results) < len(args):
            for w in pool:
                if w.ready and w.item is None and pending:
                    w.item, w.since = pending.pop(0), time.perf_counter()
                    w.conn.send((fn, args[w.item]))
            active = [w for w in pool if w.item is not None or not w.ready]
            wait([w.conn for w in active], timeout=max(0.0, min(w.limit(timeout_s) for w in active)))
            for i, w in enumerate(pool):
                state, value = _receive(w, timeout_s) if w in active else ("idle", None)
                if state == "ready":
                    w.ready = True
                elif state in ("result", "failed"):
                    if w.item is None:  # died or hung while importing: nothing to blame it on
                        raise RuntimeError(f"conformance worker: {value}")
                    results[w.item] = (
                        value if state == "result" else failed(args[w.item], value, time.perf_counter() - w.since)
                    )
                    if progress:
                        progress(results[w.item])
                    w.item = None
                    if state == "failed":
                        _stop(w)
                        pool[i] = _start(warm)
    finally:
        for w in pool:
            _stop(w)
    return [results[i] for i in range(len(args))]
