"""Beyond latency: per-op time and throughput over batch sizes and threads, each in its own child process."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.models.shared.errors import EdgepipeError
from edgepipe.profilers.isolation import in_child

OP_PROFILE_RUNTIMES = ("tflite", "onnxruntime")


def op_profile_isolated(
    runtime: str, path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int, log_path: Path
) -> dict:
    """OpProfile.to_dict() with status "measured", or status "unavailable" and the reason."""
    from edgepipe.profilers.op_profile import profile_ops

    if runtime not in OP_PROFILE_RUNTIMES:
        return _unavailable(f"no per-op profiler for {runtime}")
    try:
        profile = in_child(
            f"the {runtime} profiler crashed on {Path(path).name}",
            profile_ops,
            runtime,
            path,
            feeds,
            threads,
            runs,
            log_path=log_path,
        )
    except EdgepipeError as exc:  # a crash or a file the profiler cannot take: the table says why
        return _unavailable(str(exc))
    return {"status": "measured", **profile.to_dict()}


def throughput_isolated(
    runtime: str, path: Path, feeds: dict[str, np.ndarray], batches: tuple[int, ...], seconds: float, log_path: Path
) -> list[dict]:
    """Inferences per second at every batch size x thread count (1 .. cores); unavailable points say why."""
    from edgepipe.profilers.throughput import sweep_isolated

    return [p.to_dict() for p in sweep_isolated(runtime, path, feeds, batches, None, seconds, log_path)]


def _unavailable(reason: str) -> dict:
    return {"status": "unavailable", "reason": reason}
