"""Shared helpers: run the real edgepipe CLI in a subprocess, as a user would; the slow tier's marker."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUICK_PROFILE = """
[profile]
warmup_runs = 5
warmup_seconds = 0.05
min_runs = 50
min_seconds = 0.2
max_seconds = 2.0
op_profile_runs = 50
throughput_batches = [1, 4]
throughput_seconds = 0.1
"""


# Whole runs through the CLI and the ONNX conformance suite: `make test` runs them, `make test-fast` does not.
SLOW_FOLDERS = ("e2e", "conformance")
# Files whose assertions compare measured latencies: `make test` runs them after the rest, alone.
TIMING_FILES = (
    "e2e/test_gate_baseline.py",
    "pipeline/test_gate_relative.py",
    "profilers/test_energy.py",
    "profilers/test_paired.py",
    "profilers/test_stats_harness.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow folders' tests `slow` and the timing files' tests `timing` (other tests mark themselves)."""
    tests = Path(__file__).parent
    for item in items:
        path = Path(item.path).relative_to(tests)
        if path.parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
        if path.as_posix() in TIMING_FILES:
            item.add_marker(pytest.mark.timing)


def edgepipe(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m edgepipe.pipeline ARGS` and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edgepipe.pipeline", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )


def edgepipe_here(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The same command inside this process, for input errors: no interpreter start-up or stack import.

    The console entry runs with argv, working directory and output swapped in; the directory, sys.path
    and the modules imported from `cwd` (a user's factory file) are put back after.
    """
    from edgepipe.pipeline.cli import entry

    out, err = io.StringIO(), io.StringIO()
    argv, here, path, modules = sys.argv, Path.cwd(), list(sys.path), set(sys.modules)
    code = 0
    try:
        os.chdir(cwd or here)
        sys.argv = ["edgepipe", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            entry()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        for name in set(sys.modules) - modules if cwd else ():
            if Path(getattr(sys.modules[name], "__file__", None) or "/").parent == Path(cwd):
                del sys.modules[name]
        os.chdir(here)
        sys.argv, sys.path[:] = argv, path
    return subprocess.CompletedProcess(["edgepipe", *args], code, out.getvalue(), err.getvalue())


def quick_job(tmp: Path, name: str = "quick", extra: str = "") -> Path:
    """The default job with short profiling, written to tmp/job.toml."""
    from edgepipe.pipeline.core.config import default_job_text

    text = default_job_text()
    text = text[: text.index("[profile]")] + QUICK_PROFILE + extra
    text = text.replace('name = "cnn_digits"', f'name = "{name}"')
    path = tmp / "job.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> dict:
    """One real `edgepipe run` of the default model (quick profiling), then a second, cached one."""
    tmp = tmp_path_factory.mktemp("run")
    job = quick_job(tmp)
    first = edgepipe("run", str(job), "-o", str(tmp / "out"))
    second = edgepipe("run", str(job), "-o", str(tmp / "out"))
    return {
        "dir": tmp / "out",
        "job": job,
        "first": first,
        "second": second,
        "manifest": json.loads((tmp / "out" / "manifest.json").read_text()) if first.returncode == 0 else None,
    }


@pytest.fixture(scope="session")
def cnn_files(tmp_path_factory) -> dict[str, Path]:
    """A small CNN as .pt2, .onnx, fp32 and int8 .tflite files, converted once for every test that needs them."""
    from tests.profile_models import small_cnn

    return small_cnn(tmp_path_factory.mktemp("cnn"))
