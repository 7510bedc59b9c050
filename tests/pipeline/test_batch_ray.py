"""`edgepipe batch --executor ray` on a local Ray instance the command starts itself, offline.

Ray comes with the ray extra, which `make install` installs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgepipe.profilers.calibration import matmul_chain
from tests.conftest import edgepipe

# A real Ray instance per test: the slow tier.
pytestmark = pytest.mark.slow

FACTORIES = """
import os, time

def hangs():
    time.sleep(600)

def crashes():
    os.kill(os.getpid(), 9)
"""


def write_batch(tmp: Path, models: list[str], timeout_s: int = 300, extra: str = "") -> Path:
    path = tmp / "jobs.toml"
    path.write_text(
        f"[batch]\ntimeout_s = {timeout_s}\n[matrix]\nmodels = {json.dumps(models)}\n"
        'variants = ["fp32"]\n[defaults]\nprofile = {runtimes = []}\n' + extra
    )
    return path


def onnx_models(tmp: Path, count: int) -> None:
    (tmp / "models").mkdir(exist_ok=True)
    for i in range(count):
        matmul_chain(tmp / "models" / f"m{i}.onnx", 2 + i % 2, (1, 8, 16), seed=i)


def runs(out: Path) -> dict[str, dict]:
    return {r["job"]: r for r in json.loads((out / "batch.json").read_text())["runs"]}


def test_every_job_runs_on_ray_its_manifest_is_true_and_a_failing_job_fails_alone(tmp_path):
    onnx_models(tmp_path, 2)
    (tmp_path / "models" / "broken.onnx").write_bytes(b"not an onnx file")
    jobs = write_batch(tmp_path, ["models/*.onnx"])
    result = edgepipe("batch", str(jobs), "-o", str(tmp_path / "out"), "--executor", "ray", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    by_job = runs(tmp_path / "out")
    assert sorted(by_job) == ["broken", "m0", "m1"]
    assert by_job["broken"]["status"] == "failed" and "broken.onnx" in by_job["broken"]["error"]
    for name in ("m0", "m1"):
        run = by_job[name]
        assert run["status"] == "done", run
        manifest = json.loads((tmp_path / "out" / run["run_dir"] / "manifest.json").read_text())
        assert [a for a in manifest["artifacts"] if a["path"].endswith(".tflite")], (name, manifest["artifacts"])
        for art in manifest["artifacts"]:
            data = (tmp_path / "out" / run["run_dir"] / art["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == art["sha256"] and len(data) == art["size_bytes"], art


def test_a_hung_job_times_out_and_a_crashed_worker_fails_its_job(tmp_path):
    (tmp_path / "userpkg.py").write_text(FACTORIES)
    jobs = write_batch(
        tmp_path,
        ["userpkg:hangs", "userpkg:crashes"],
        timeout_s=15,
        extra='[[entry]]\nmodel = "userpkg:*"\ninputs = ["1x4"]\n',
    )
    # Ray's workers inherit the environment of the instance the command starts, so they import userpkg too.
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "batch",
            str(jobs),
            "-o",
            str(tmp_path / "out"),
            "--executor",
            "ray",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    by_job = {r["job"]: r for r in json.loads(result.stdout)["runs"]}  # Ray's crash notice stays out of stdout
    assert "exceeded the 15 s job timeout" in by_job["userpkg_hangs"]["error"]
    assert by_job["userpkg_crashes"]["status"] == "failed"
    assert "Ray worker crashed while running this job" in by_job["userpkg_crashes"]["error"], by_job
