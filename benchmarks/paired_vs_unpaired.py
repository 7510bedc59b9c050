"""Self-ratio of one model's p90: two independent child-process profiles vs one interleaved pair.

Usage: python benchmarks/paired_vs_unpaired.py [MODEL.tflite|.onnx|.pt2]
(without a model, builds a 32x256, 6-layer MatMul+Relu ONNX chain in a temporary directory)

A model against itself has a true ratio of 1, so how far each series strays from 1 is what a
relative budget ("int8 p90 <= 1.15x fp32 p90") would see as noise.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPEATS = 6
THREADS = 1
# Both methods get about the same time per side: 0.5 s warm-up, then ~1.5 s of timed calls.
BLOCKS, BLOCK_SECONDS, WARMUP_SECONDS = 30, 0.05, 0.5


def model_and_feeds(tmp: Path) -> tuple[str, Path, dict[str, np.ndarray]]:
    """(runtime, path, feeds): argv[1] with its runtime from the suffix, else the built-in chain."""
    from edgepipe.profilers.calibration import matmul_chain
    from edgepipe.profilers.runtimes import RUNTIME_FOR_SUFFIX, RUNTIMES

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else matmul_chain(tmp / "chain.onnx", 6, (32, 256))
    runtime = RUNTIME_FOR_SUFFIX[path.suffix]
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in RUNTIMES[runtime](path, THREADS).inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)  # an open dimension runs at 1
        feeds[spec.name] = (
            rng.standard_normal(shape).astype(spec.dtype)
            if np.dtype(spec.dtype).kind == "f"
            else np.zeros(shape, spec.dtype)
        )
    return runtime, path, feeds


def main() -> None:
    """Print both series of p90 self-ratios, their max |ratio - 1| and spreads, and the spread ratio."""
    from edgepipe.profilers.harness import TimingSettings
    from edgepipe.profilers.isolation import in_child
    from edgepipe.profilers.paired import paired_ratio
    from edgepipe.profilers.profile import profile_in_process

    timing = TimingSettings(
        warmup_runs=10,
        warmup_seconds=WARMUP_SECONDS,
        min_runs=100,
        min_seconds=BLOCKS * BLOCK_SECONDS,
        max_seconds=10.0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        runtime, path, feeds = model_and_feeds(Path(tmp))
        side, log = (runtime, path, feeds), Path(tmp) / "log"
        unpaired, paired = [], []
        for i in range(REPEATS):
            a, b = (
                in_child(profile_in_process, runtime, path, feeds, THREADS, timing, log_path=log)["latency_ms"]
                for _ in range(2)
            )
            unpaired.append(a["p90"] / b["p90"])
            pair = in_child(
                paired_ratio, side, side, THREADS, BLOCKS, BLOCK_SECONDS, WARMUP_SECONDS, seed=i, log_path=log
            ).to_dict()
            paired.append(pair["p90_ratio"])
            lo, hi = pair["p90_ratio_ci95"]
            print(
                f"repeat {i + 1}: unpaired p90 {a['p90'] * 1e3:.1f} / {b['p90'] * 1e3:.1f} us = {unpaired[-1]:.3f}   "
                f"paired p90 ratio {paired[-1]:.3f} (95 % CI {lo:.3f}-{hi:.3f}, "
                f"{pair['calls_per_block']} calls x {pair['blocks']} blocks)"
            )
    for name, series in (("unpaired", unpaired), ("paired", paired)):
        print(
            f"{name:>8}: {' '.join(f'{r:.3f}' for r in series)}   max |ratio-1| {_worst(series):.3f}   "
            f"spread (max-min) {max(series) - min(series):.3f}"
        )
    print(
        f"model: {path.name} ({runtime}); spread ratio unpaired/paired "
        f"{(max(unpaired) - min(unpaired)) / max(max(paired) - min(paired), 1e-9):.1f}x, "
        f"max |ratio-1| ratio {_worst(unpaired) / max(_worst(paired), 1e-9):.1f}x (target: paired within 0.15 of 1)"
    )


def _worst(series: list[float]) -> float:
    return max(abs(r - 1) for r in series)


if __name__ == "__main__":
    main()
