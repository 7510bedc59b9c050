import time

import numpy as np
import pytest

from profilers.harness import TimingSettings, measure, time_invocations, warm_up
from profilers.stats import latency_stats


def test_latency_stats_in_milliseconds():
    samples = np.arange(1, 101) * 1_000_000  # 1..100 ms
    s = latency_stats(samples)
    assert s["n"] == 100 and s["min"] == 1 and s["max"] == 100
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5) and s["std"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))


def test_measure_meets_both_minimums():
    calls = []
    samples, wall = measure(lambda: calls.append(1), TimingSettings(min_runs=50, min_seconds=0.05, max_seconds=5))
    assert len(samples) >= 50 and wall >= 0.05e9 and len(samples) == len(calls)


def test_measure_stops_at_max_seconds():
    samples, wall = measure(lambda: time.sleep(0.01), TimingSettings(min_runs=10_000, min_seconds=0, max_seconds=0.1))
    assert 5 <= len(samples) < 10_000 and wall < 0.5e9
    assert samples.min() >= 0.01e9


def test_warm_up_counts_and_first_call_apart():
    calls = []
    first, runs = warm_up(lambda: calls.append(1), TimingSettings(warmup_runs=7, warmup_seconds=0))
    assert runs == 7 == len(calls) and first > 0
    t = time_invocations(lambda: None, TimingSettings(warmup_runs=3, warmup_seconds=0, min_runs=5, min_seconds=0))
    assert t.warmup_runs == 3 and len(t.samples_ns) == 5
