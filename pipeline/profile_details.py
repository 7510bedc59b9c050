"""Beyond latency: per-op time and throughput over batch sizes and threads, each in its own child process."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from models.capture import output_to_log
from models.errors import EdgepipeError

OP_PROFILE_RUNTIMES = ("tflite", "onnxruntime")


def op_profile_isolated(runtime: str, path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int,
                        log_path: Path) -> dict:
    """OpProfile.to_dict() with status "measured", or status "unavailable" and the reason."""
    if runtime not in OP_PROFILE_RUNTIMES:
        return _unavailable(f"no per-op profiler for {runtime}")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_op_child, runtime, path, feeds, threads, runs, log_path).result()
    except BrokenProcessPool:
        return _unavailable(f"the {runtime} profiler crashed on {Path(path).name}")


def throughput_isolated(runtime: str, path: Path, feeds: dict[str, np.ndarray], batches: tuple[int, ...],
                        seconds: float, log_path: Path) -> list[dict]:
    """Inferences per second at every batch size x thread count (1 .. cores); unavailable points say why."""
    from profilers.throughput import sweep_isolated

    threads = tuple(range(1, (os.cpu_count() or 1) + 1))
    return [p.to_dict() for p in sweep_isolated(runtime, path, feeds, batches, threads, seconds, log_path)]


def _op_child(runtime: str, path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int, log_path: Path) -> dict:
    from profilers.op_profile import profile_ops

    with output_to_log(log_path):
        try:
            return {"status": "measured", **profile_ops(runtime, path, feeds, threads, runs).to_dict()}
        except EdgepipeError as exc:
            return _unavailable(str(exc))


def _unavailable(reason: str) -> dict:
    return {"status": "unavailable", "reason": reason}
