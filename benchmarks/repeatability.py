"""Profile the same model five times, each in a fresh child process, and print the spread of p50.

Usage: python benchmarks/repeatability.py [MODEL.tflite|.onnx|.pt2]
(without a model, exports cnn_digits to a temporary directory first)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sample_model import model_from_argv

REPEATS = 5


def main() -> None:
    """Print each repeat's p50 and p90 and the spread (max - min) / median of the p50s."""
    import numpy as np

    from edgepipe.pipeline.profile.files import profile_file

    with tempfile.TemporaryDirectory() as tmp:
        path = model_from_argv(Path(tmp))
        p50s = []
        for i in range(REPEATS):
            result = profile_file(path, None, 1)
            lat = result["latency_ms"]
            p50s.append(lat["p50"])
            print(
                f"repeat {i + 1}: p50 {lat['p50'] * 1e3:.3f} us  p90 {lat['p90'] * 1e3:.3f} us  "
                f"n {lat['n']}  cv {lat['cv']:.3f}"
            )
    spread = (max(p50s) - min(p50s)) / float(np.median(p50s))
    print(
        f"model: {path.name}; spread of p50 over {REPEATS} runs: {spread * 100:.2f} % "
        "(target <= 5 % on a quiet machine)"
    )


if __name__ == "__main__":
    main()
