"""The model a benchmark measures: the one given on the command line, or a fresh cnn_digits export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def model_from_argv(tmp: Path) -> Path:
    """sys.argv[1] when given; otherwise export cnn_digits into tmp and return its fp32 TFLite file."""
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    subprocess.run(
        [sys.executable, "-m", "edgepipe.pipeline", "export", "cnn_digits", "-o", str(tmp), "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return tmp / "model_fp32.tflite"
