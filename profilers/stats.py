"""Latency statistics from raw per-run samples."""

from __future__ import annotations

import numpy as np

# numpy's default ("linear") interpolation between the two nearest ranks.
PERCENTILE_METHOD = "linear"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_BLOCKS = 30  # contiguous stretches of a run, the units a latency bootstrap resamples


def latency_stats(samples_ns: np.ndarray, seed: int = 0) -> dict:
    """p50/p90/p99, mean, std (ddof=1), min, max, n in ms; block-bootstrap CIs, CV and Tukey outliers.

    samples_ns in the order they were timed: the confidence intervals resample stretches of the run.
    """
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99], method=PERCENTILE_METHOD)
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if len(ms) > 1 else 0.0
    q1, q3 = np.percentile(ms, [25, 75], method=PERCENTILE_METHOD)
    fence = q3 + 1.5 * (q3 - q1)
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": mean,
        "std": std,
        "min": float(ms.min()),
        "max": float(ms.max()),
        "n": int(len(ms)),
        "cv": std / mean if mean > 0 else None,
        "ci95": bootstrap_ci(ms, (50, 90), seed),
        "outliers": {"count": int((ms > fence).sum()), "method": "above Q3 + 1.5 IQR (Tukey)"},
        "percentile_method": PERCENTILE_METHOD,
    }


def bootstrap_ci(
    values: np.ndarray,
    percentiles: tuple[float, ...],
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    blocks: int = BOOTSTRAP_BLOCKS,
) -> dict[str, list[float]]:
    """Block-bootstrap 95 % confidence interval of each requested percentile; values in time order.

    Consecutive calls share the machine's state (a clock step, a busy neighbour), so single calls
    are not independent and resampling them gave p90 intervals of +-0.5 % on runs whose p90 moved
    by 10 % from one run to the next. The run is cut into `blocks` contiguous stretches and whole
    stretches are resampled, so drift within the run widens the interval as it should.

    A resample is a count per stretch; its pooled samples are never built. All values are sorted
    once with, per position, how many of each stretch's values lie at or below it, so the j-th
    smallest pooled value is the first sorted value whose weighted count exceeds j, found by a
    binary search run for all resamples at once.
    """
    ordered, below = ranked_stretches(values, blocks)
    stretches = below.shape[1]
    weights = np.random.default_rng(seed).multinomial(stretches, np.full(stretches, 1 / stretches), resamples)
    result = {}
    for p in percentiles:
        estimates = pooled_percentile(ordered, below, weights, p)
        lo, hi = np.percentile(estimates, [2.5, 97.5])
        result[f"p{int(p)}"] = [float(lo), float(hi)]
    return result


def ranked_stretches(values: np.ndarray, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(values sorted, below): below[i, b] counts stretch b's values among the i smallest.

    Stretch b is the b-th of min(blocks, n) contiguous runs of values in time order, sizes within one.
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    stretch = np.arange(n) * max(1, min(blocks, n)) // n
    order = np.argsort(x, kind="stable")
    below = np.zeros((n + 1, int(stretch[-1]) + 1), dtype=np.int32)
    below[np.arange(1, n + 1), stretch[order]] = 1
    return x[order], np.cumsum(below, axis=0, dtype=np.int32)


def pooled_percentile(ordered: np.ndarray, below: np.ndarray, weights: np.ndarray, p: float) -> np.ndarray:
    """numpy's linear-method p-th percentile of each resample that takes weights[r, b] copies of stretch b."""
    size = weights @ below[-1]  # pooled sample count per resample
    rank = (size - 1) * p / 100
    k = np.floor(rank).astype(np.int64)
    low, high = _kth_smallest(below, weights, k), _kth_smallest(below, weights, np.minimum(k + 1, size - 1))
    return ordered[low] + (rank - k) * (ordered[high] - ordered[low])


def _kth_smallest(below: np.ndarray, weights: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per resample, the least sorted position i whose weighted count of values <= ordered[i] exceeds k."""
    lo, hi = np.zeros(len(k), dtype=np.int64), np.full(len(k), len(below) - 2, dtype=np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        enough = np.einsum("rb,rb->r", below[mid + 1], weights) > k
        hi, lo = np.where(enough, mid, hi), np.where(enough, lo, mid + 1)
    return lo
