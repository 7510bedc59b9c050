import time

import numpy as np
import pytest

from edgepipe.profilers.harness import TimingSettings, measure, time_invocations, warm_up
from edgepipe.profilers.stats import latency_stats


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
    rng = np.random.default_rng(11)
    covered = sum(
        lo < 1.0 < hi
        for lo, hi in (latency_stats(rng.lognormal(0, 0.3, 2000) * 1e6, seed)["ci95"]["p50"] for seed in range(40))
    )
    assert covered >= 32, "the true median of lognormal(0, .3) is 1 ms; 95 % nominal: 38 of 40"


def test_cv_and_tukey_outliers():
    samples = np.array([10] * 99 + [1000]) * 1e6
    s = latency_stats(samples)
    assert s["outliers"]["count"] == 1
    assert s["cv"] == pytest.approx(np.std(samples, ddof=1) / np.mean(samples))


def test_pooled_percentile_equals_numpy_on_the_materialised_resample():
    from edgepipe.profilers.stats import pooled_percentile, ranked_stretches

    rng = np.random.default_rng(3)
    values, stretches = rng.lognormal(0, 0.5, 403), 30
    ordered, below = ranked_stretches(values, stretches)
    stretch = np.repeat(np.arange(stretches), below[-1])  # 13 or 14 consecutive values each
    assert below.shape == (404, 30) and set(below[-1]) == {13, 14}
    weights = rng.multinomial(stretches, np.full(stretches, 1 / stretches), 40)
    for p in (0, 50, 90, 99, 100):
        fast = pooled_percentile(ordered, below, weights, p)
        pooled = [
            np.concatenate([values[stretch == b] for b in range(stretches) for _ in range(w[b])]) for w in weights
        ]
        assert fast == pytest.approx([np.percentile(x, p) for x in pooled], rel=1e-12)


def test_block_intervals_cover_a_drifting_run_where_per_call_intervals_do_not():
    """Each run drifts by stretches (as a shared machine does); the pooled p90 of many runs is the truth."""
    from edgepipe.profilers.stats import bootstrap_ci

    rng = np.random.default_rng(5)

    def run(n=1500):
        return np.repeat(rng.lognormal(0, 0.15, 30), n // 30) * rng.lognormal(0, 0.2, n)

    truth = np.percentile(np.concatenate([run() for _ in range(200)]), 90)
    covered = {"block": 0, "per call": 0}
    for seed in range(60):
        x = run()
        for name, blocks in (("block", 30), ("per call", len(x))):
            lo, hi = bootstrap_ci(x, (90,), seed=seed, resamples=500, blocks=blocks)["p90"]
            covered[name] += lo <= truth <= hi
    assert covered["block"] >= 50 and covered["per call"] <= 40, covered  # 95 % nominal: 57 of 60
