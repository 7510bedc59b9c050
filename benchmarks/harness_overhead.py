"""Our TFLite runner vs a bare interpreter.invoke() loop, alternated in one process.

Usage: python benchmarks/harness_overhead.py [MODEL.tflite]
(without a model, exports cnn_digits to a temporary directory first)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from sample_model import model_from_argv

ROUNDS = 5
RUNS = 20_000


def bare_loop(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """What a user would write by hand: set the input once, time invoke() with perf_counter_ns."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    for detail, value in zip(interpreter.get_input_details(), feeds.values()):
        interpreter.set_tensor(detail["index"], value)
    for _ in range(100):
        interpreter.invoke()
    samples = np.empty(RUNS, dtype=np.int64)
    for i in range(RUNS):
        t0 = time.perf_counter_ns()
        interpreter.invoke()
        samples[i] = time.perf_counter_ns() - t0
    return samples


def our_runner(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """edgepipe's session and harness with the same run count."""
    from edgepipe.profilers.harness import TimingSettings, time_invocations
    from edgepipe.profilers.runtimes import open_tflite

    settings = TimingSettings(warmup_runs=100, warmup_seconds=0, min_runs=RUNS, min_seconds=0, max_seconds=600)
    return time_invocations(open_tflite(path, 1).bind(feeds), settings).samples_ns


def main() -> None:
    """Print each round's p50s and the ratio of their medians."""
    with tempfile.TemporaryDirectory() as tmp:
        path = model_from_argv(Path(tmp))
        from edgepipe.profilers.runtimes import open_tflite

        rng = np.random.default_rng(0)
        feeds = {s.name: rng.standard_normal(s.shape).astype(s.dtype) for s in open_tflite(path, 1).inputs}
        ours, bare = [], []
        for round_ in range(ROUNDS):
            ours.append(np.median(our_runner(path, feeds)) / 1e3)
            bare.append(np.median(bare_loop(path, feeds)) / 1e3)
            print(f"round {round_ + 1}: edgepipe p50 {ours[-1]:.3f} us   bare invoke() p50 {bare[-1]:.3f} us")
    ratio = np.median(ours) / np.median(bare)
    print(f"model: {path.name}; ratio of p50s (edgepipe / bare): {ratio:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
