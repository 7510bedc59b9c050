"""Beyond latency: per-op time and throughput, each measured in its own child process."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgepipe.models.shared.errors import EdgepipeError
from edgepipe.profilers.isolation import in_child

OP_PROFILE_RUNTIMES = ("tflite", "onnxruntime")


def measured_or_unavailable(function: Callable, *args, log_path: Path) -> dict:
    """function(*args).to_dict() from a child with status "measured", or status "unavailable" and the reason."""
    try:
        found = in_child(function, *args, log_path=log_path)
    except EdgepipeError as exc:  # a crash or a file the profiler cannot take: the table says why
        return {"status": "unavailable", "reason": str(exc)}
    return {"status": "measured", **found.to_dict()}
