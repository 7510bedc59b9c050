"""The timing loop: warm-up by count and seconds, then a bounded measured phase."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class TimingSettings:
    """Warm-up and measured-phase bounds; the measured phase stops at max_seconds regardless.

    The defaults follow MLPerf Inference's single-stream rules, scaled to a command a person waits
    for. MLPerf asks for at least 1024 queries (enough that its 90th percentile, and our p99, rest
    on tens of samples beyond them) and at least 600 s (60 s in its early rounds): we keep 1024
    runs but ask for 10 s, long enough to span frequency-governor and scheduler swings on a
    phone-class CPU, and stop at 60 s (MLPerf's old minimum) so a 100 ms model ends after
    ~600 runs instead of 100 s. Warm-up is 10 runs and 1 s: the first runs pack XNNPACK weights
    and allocate ORT's arenas, and a second lets the CPU clock ramp up before timing starts.
    """

    warmup_runs: int = 10
    warmup_seconds: float = 1.0
    min_runs: int = 1024
    min_seconds: float = 10.0
    max_seconds: float = 60.0


# A look in about a second (at most 5 s): enough for a p50 that says which variant is faster,
# too few runs for a trustworthy p99.
QUICK = TimingSettings(warmup_runs=5, warmup_seconds=0.1, min_runs=50, min_seconds=0.5, max_seconds=5.0)


@dataclass(frozen=True)
class Timing:
    """Raw measurements of one measured phase."""

    samples_ns: np.ndarray
    wall_ns: int
    first_ns: int
    warmup_runs: int


def time_once(invoke: Callable[[], object]) -> int:
    """Duration of one call in nanoseconds."""
    start = time.perf_counter_ns()
    invoke()
    return time.perf_counter_ns() - start


def warm_up(invoke: Callable[[], object], settings: TimingSettings) -> tuple[int, int]:
    """Run until both the warm-up count and duration are reached; returns (first call ns, runs)."""
    first = time_once(invoke)
    runs, deadline = 1, time.perf_counter_ns() + int(settings.warmup_seconds * 1e9)
    while runs < settings.warmup_runs or time.perf_counter_ns() < deadline:
        invoke()
        runs += 1
    return first, runs


def measure(invoke: Callable[[], object], settings: TimingSettings) -> tuple[np.ndarray, int]:
    """Time each call until min_runs and min_seconds are both met, or max_seconds passes."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    min_end, max_end = start + int(settings.min_seconds * 1e9), start + int(settings.max_seconds * 1e9)
    while True:
        t0 = clock()
        invoke()
        t1 = clock()
        samples.append(t1 - t0)
        if (len(samples) >= settings.min_runs and t1 >= min_end) or t1 >= max_end:
            break
    return np.asarray(samples, dtype=np.int64), clock() - start


def time_invocations(invoke: Callable[[], object], settings: TimingSettings) -> Timing:
    """Warm up, then measure."""
    first, warm_runs = warm_up(invoke, settings)
    samples, wall = measure(invoke, settings)
    return Timing(samples, wall, first, warm_runs)
