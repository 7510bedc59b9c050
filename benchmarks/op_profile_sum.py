"""Do per-op tables add up? Op-time sums against the harness's own latency, for TFLite and ONNX Runtime.

Usage: python benchmarks/op_profile_sum.py [MODEL.tflite MODEL.onnx]
(without models, exports cnn_digits to a temporary directory first)

For each file: the mean latency of the timing harness (no profiler attached), then the sum of
the per-op times of profilers.op_profile, and their ratio (target: within 20 %).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgepipe.profilers.harness import QUICK, time_invocations
from edgepipe.profilers.op_profile import profile_ops
from edgepipe.profilers.runtimes import RUNTIME_FOR_SUFFIX, RUNTIMES


def compare(path: Path) -> None:
    """Print harness mean, op-time sum and their ratio for one file."""
    runtime = RUNTIME_FOR_SUFFIX[path.suffix]
    session = RUNTIMES[runtime](path, 1)
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.random(s.shape).astype(s.dtype) for s in session.inputs}
    mean_ms = float(np.mean(time_invocations(session.bind(feeds), QUICK).samples_ns)) / 1e6
    ops = profile_ops(runtime, path, feeds, 1, 500)
    ratio = ops.op_total_ms / mean_ms
    print(
        f"{path.name:<22} {runtime:<12} harness mean {mean_ms:8.4f} ms   op sum {ops.op_total_ms:8.4f} ms   "
        f"ratio {ratio:5.2f} ({'within' if abs(ratio - 1) <= 0.2 else 'outside'} 20 %)"
    )


def main() -> None:
    """Compare every given file, or a fresh cnn_digits export's TFLite and ONNX files."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(p) for p in sys.argv[1:]]
        if not paths:
            subprocess.run(
                [sys.executable, "-m", "edgepipe.pipeline", "export", "cnn_digits", "-o", tmp, "--json"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            paths = [Path(tmp) / "model_fp32.tflite", Path(tmp) / "model.onnx"]
        for path in paths:
            compare(path)


if __name__ == "__main__":
    main()
