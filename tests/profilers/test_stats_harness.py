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


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = latency_stats(rng.lognormal(0, 0.3, 200) * 1e6)
    large = latency_stats(rng.lognormal(0, 0.3, 5000) * 1e6)
    for s in (small, large):
        for p in ("p50", "p90"):
            lo, hi = s["ci95"][p]
            assert lo <= s[p] <= hi
    width = lambda s: s["ci95"]["p90"][1] - s["ci95"]["p90"][0]  # noqa: E731
    assert width(large) < width(small) / 2
    assert large["ci95"]["p50"][0] < 1.0 < large["ci95"]["p50"][1], "true median of lognormal(0, .3) is 1 ms"


def test_cv_and_tukey_outliers():
    samples = np.array([10] * 99 + [1000]) * 1e6
    s = latency_stats(samples)
    assert s["outliers"]["count"] == 1
    assert s["cv"] == pytest.approx(np.std(samples, ddof=1) / np.mean(samples))


def test_order_statistic_bootstrap_matches_brute_force_resampling():
    from profilers.stats import bootstrap_ci

    values = np.random.default_rng(3).lognormal(0, 0.5, 400)
    fast = bootstrap_ci(values, (50, 90), seed=0, resamples=4000)
    rng = np.random.default_rng(7)
    resampled = values[rng.integers(0, len(values), size=(4000, len(values)))]
    for p in (50, 90):
        brute = np.percentile(np.percentile(resampled, p, axis=1), [2.5, 97.5])
        width = brute[1] - brute[0]
        assert fast[f"p{p}"][0] == pytest.approx(brute[0], abs=0.1 * width)
        assert fast[f"p{p}"][1] == pytest.approx(brute[1], abs=0.1 * width)
