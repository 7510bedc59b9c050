"""Latency ratio of two models measured interleaved in one process, with a block-bootstrap CI.

Two models profiled in separate processes can land in different machine states (on a 2-core
host the same model's p50 moved from 10.6 us in one process to 16 us in the next), so a ratio
of independent p90s flaps. Interleaving short blocks of both in one process makes every block
pair see the same state; the blocks, not the single calls, are the independent units.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgepipe.models.shared.errors import ConfigError, InputFileError
from edgepipe.profilers.runtimes import RUNTIMES, RuntimeOptions
from edgepipe.profilers.stats import PERCENTILE_METHOD, pooled_percentile, ranked_stretches

# (runtime name, model file, feeds)
Side = tuple[str, Path, dict[str, np.ndarray]]

RESAMPLES = 1000
MIN_CALLS_PER_BLOCK = 5
MIN_WARMUP_CALLS = 10
ORDER = "ABBA"
METHOD = (
    "interleaved in one process, blocks in ABBA order (target first in even blocks, reference first "
    "in odd ones), one untimed call before each run of a block; 95 % percentile bootstrap over blocks "
    f"({RESAMPLES} resamples of block indices with replacement, samples of the chosen blocks pooled per side)"
)


@dataclass(frozen=True)
class PairedRatio:
    """target / reference latency ratios from one interleaved measurement; latencies in ms."""

    target: str
    reference: str
    target_runtime: str
    reference_runtime: str
    threads: int
    p50_ratio: float  # pooled: p50 of all target samples / p50 of all reference samples
    p90_ratio: float
    block_median_p50_ratio: float  # median over blocks of that block's p50 ratio
    block_median_p90_ratio: float
    p50_ratio_ci95: tuple[float, float]
    p90_ratio_ci95: tuple[float, float]
    target_p50_ms: float
    target_p90_ms: float
    reference_p50_ms: float
    reference_p90_ms: float
    block_p50_ratios: tuple[float, ...]
    block_p90_ratios: tuple[float, ...]
    n: int  # timed calls per side
    blocks: int
    calls_per_block: int
    seconds: float  # wall time of the interleaved phase
    seed: int
    resamples: int = RESAMPLES
    order: str = ORDER
    method: str = METHOD

    def to_dict(self) -> dict:
        """JSON form: floats, ints, strings and lists only."""
        out = asdict(self)
        for key in ("p50_ratio_ci95", "p90_ratio_ci95", "block_p50_ratios", "block_p90_ratios"):
            out[key] = list(out[key])
        out["percentile_method"] = PERCENTILE_METHOD
        return out


def paired_ratio(
    target: Side,
    reference: Side,
    threads: int = 1,
    blocks: int = 30,
    block_seconds: float = 0.05,
    warmup_seconds: float = 0.5,
    seed: int = 0,
    options: RuntimeOptions = RuntimeOptions(),
) -> PairedRatio:
    """Time target and reference interleaved in this process; their latency ratios with 95 % CIs."""
    if blocks < 2:
        raise ConfigError(f"blocks {blocks} is too few for a bootstrap over blocks; give 2 or more (30 is usual)")
    if not block_seconds > 0:
        raise ConfigError(f"block_seconds must be positive, got {block_seconds}")
    invoke_t, invoke_r = _bound(target, threads, options), _bound(reference, threads, options)
    slower_ns = max(_warm(invoke_t, warmup_seconds), _warm(invoke_r, warmup_seconds))
    calls = max(MIN_CALLS_PER_BLOCK, round(block_seconds * 1e9 / slower_ns))
    t_ns, r_ns, wall_ns = _interleave(invoke_t, invoke_r, blocks, calls)
    t_ms, r_ms = t_ns / 1e6, r_ns / 1e6  # shape (blocks, calls)
    (t50, t90), (r50, r90) = _percentiles(t_ms.ravel()), _percentiles(r_ms.ravel())
    block_t, block_r = _percentiles(t_ms, axis=1), _percentiles(r_ms, axis=1)  # each (2, blocks)
    block_ratios = block_t / block_r
    ci50, ci90 = _bootstrap_ci(t_ms, r_ms, seed)
    return PairedRatio(
        target=str(target[1]),
        reference=str(reference[1]),
        target_runtime=target[0],
        reference_runtime=reference[0],
        threads=threads,
        p50_ratio=float(t50 / r50),
        p90_ratio=float(t90 / r90),
        block_median_p50_ratio=float(np.median(block_ratios[0])),
        block_median_p90_ratio=float(np.median(block_ratios[1])),
        p50_ratio_ci95=ci50,
        p90_ratio_ci95=ci90,
        target_p50_ms=float(t50),
        target_p90_ms=float(t90),
        reference_p50_ms=float(r50),
        reference_p90_ms=float(r90),
        block_p50_ratios=tuple(float(x) for x in block_ratios[0]),
        block_p90_ratios=tuple(float(x) for x in block_ratios[1]),
        n=int(t_ms.size),
        blocks=blocks,
        calls_per_block=calls,
        seconds=wall_ns / 1e9,
        seed=seed,
    )


def _bound(side: Side, threads: int, options: RuntimeOptions) -> Callable[[], object]:
    """The zero-argument call to time for one side."""
    runtime, path, feeds = side
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} for {path} is unknown; choose one of {', '.join(RUNTIMES)}")
    if not Path(path).is_file():
        # ORT and TFLite word a missing file differently (or as a parse error): say it plainly.
        raise InputFileError(f"{path} does not exist or is not a file; give the path of a model to time")
    return RUNTIMES[runtime](Path(path), threads, options).bind(feeds)


def _warm(invoke: Callable[[], object], seconds: float) -> float:
    """Run for `seconds` (at least MIN_WARMUP_CALLS calls); the median ns of the later half of the calls."""
    clock = time.perf_counter_ns
    durations: list[int] = []
    deadline = clock() + int(seconds * 1e9)
    while len(durations) < MIN_WARMUP_CALLS or clock() < deadline:
        t0 = clock()
        invoke()
        durations.append(clock() - t0)
    # the first calls pack weights and grow arenas; they would make the blocks too short
    return float(np.median(durations[len(durations) // 2 :]))


def _interleave(
    invoke_t: Callable[[], object], invoke_r: Callable[[], object], blocks: int, calls: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """(target ns, reference ns) each shaped (blocks, calls), and the wall ns of the whole phase.

    ABBA order: a fixed AB order puts the target at the same place in every block, so a drift
    within blocks (clock ramp, a neighbour process waking up) always lands on one side; swapping
    the order each block makes a linear drift cancel over every two blocks. The untimed call
    before each run lets a model bring its weights back into cache after the other evicted them,
    so neither is charged for the interleaving itself.
    """
    clock = time.perf_counter_ns
    samples = {"t": np.empty((blocks, calls), np.int64), "r": np.empty((blocks, calls), np.int64)}
    invokes = {"t": invoke_t, "r": invoke_r}
    start = clock()
    for block in range(blocks):
        for side in ("t", "r") if block % 2 == 0 else ("r", "t"):
            invoke, row = invokes[side], samples[side][block]
            invoke()
            for i in range(calls):
                t0 = clock()
                invoke()
                row[i] = clock() - t0
    return samples["t"], samples["r"], clock() - start


def _percentiles(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """(p50, p90) along axis with the project's percentile method."""
    return np.percentile(values, [50, 90], axis=axis, method=PERCENTILE_METHOD)


def _bootstrap_ci(t_ms: np.ndarray, r_ms: np.ndarray, seed: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """95 % CIs of the pooled p50 and p90 ratios, resampling block indices (the same ones for both sides)."""
    blocks = t_ms.shape[0]
    picks = np.random.default_rng(seed).integers(0, blocks, size=(RESAMPLES, blocks))
    weights = np.stack([np.bincount(row, minlength=blocks) for row in picks])  # copies of each block per resample
    sides = [ranked_stretches(side.ravel(), blocks) for side in (t_ms, r_ms)]  # a block's calls are one stretch
    (lo50, hi50), (lo90, hi90) = (
        np.percentile(pooled_percentile(*sides[0], weights, p) / pooled_percentile(*sides[1], weights, p), [2.5, 97.5])
        for p in (50, 90)
    )
    return (float(lo50), float(hi50)), (float(lo90), float(hi90))
