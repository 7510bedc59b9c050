"""Cold run vs cached rerun of the same job, measured side by side in one go.

Usage: python benchmarks/rerun.py [JOB.toml]   (the embedded default job when omitted)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(job: list[str], run_dir: Path) -> float:
    """Wall seconds of one `edgepipe run` in a fresh interpreter, as a user would start it."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "edgepipe.pipeline", "run", *job, "-o", str(run_dir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    """Print cold seconds, cached seconds and their ratio."""
    job = sys.argv[1:2]
    with tempfile.TemporaryDirectory(prefix="edgepipe-rerun-") as tmp:
        run_dir = Path(tmp) / "run"
        cold = timed_run(job, run_dir)
        cached = timed_run(job, run_dir)
    print(f"job: {job[0] if job else 'embedded default'}")
    print(f"cold run:      {cold:7.2f} s")
    print(f"cached rerun:  {cached:7.2f} s")
    print(f"ratio:         {cold / cached:7.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
