"""Latency statistics from raw per-run samples."""
from __future__ import annotations

import numpy as np

# numpy's default ("linear") interpolation between the two nearest ranks.
PERCENTILE_METHOD = "linear"


def latency_stats(samples_ns: np.ndarray) -> dict:
    """p50/p90/p99, mean, std (ddof=1), min, max and n, in milliseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99], method=PERCENTILE_METHOD)
    return {
        "p50": float(p50), "p90": float(p90), "p99": float(p99),
        "mean": float(ms.mean()), "std": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "min": float(ms.min()), "max": float(ms.max()), "n": int(len(ms)),
        "percentile_method": PERCENTILE_METHOD,
    }
