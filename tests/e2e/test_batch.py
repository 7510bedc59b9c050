"""`edgepipe batch`: failures stay with their job, a killed batch resumes without redoing work, caches answer reruns."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from edgepipe.profilers.calibration import matmul_chain
from tests.conftest import edgepipe

FACTORIES = """
import os, time
import torch

def hangs():
    time.sleep(600)

def crashes():
    os.kill(os.getpid(), 9)

def small():
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
"""


def batch_file(tmp: Path, models: list[str], extra: str = "", batch: str = "timeout_s = 300") -> Path:
    path = tmp / "jobs.toml"
    path.write_text(
        f'[batch]\n{batch}\n[matrix]\nmodels = {json.dumps(models)}\nvariants = ["fp32"]\n'
        "[defaults]\nprofile = {runtimes = []}\n" + extra
    )
    return path


def onnx_models(tmp: Path, count: int) -> list[str]:
    (tmp / "models").mkdir(exist_ok=True)
    return [str(matmul_chain(tmp / "models" / f"m{i}.onnx", 2 + i % 3, (1, 8, 16), seed=i)) for i in range(count)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_manifests_true(out: Path) -> dict[str, dict]:
    """Every run directory's manifest lists only files that exist with their recorded sha256."""
    manifests = {}
    for run in json.loads((out / "batch.json").read_text())["runs"]:
        if not (out / run["run_dir"] / "manifest.json").is_file():  # failed before its first stage finished
            continue
        manifest = json.loads((out / run["run_dir"] / "manifest.json").read_text())
        for art in manifest["artifacts"]:
            assert sha256(out / run["run_dir"] / art["path"]) == art["sha256"], (run["job"], art["path"])
        manifests[run["job"]] = manifest
    return manifests


def test_failures_stay_with_their_job_and_workers_are_replaced(tmp_path):
    (tmp_path / "userpkg.py").write_text(FACTORIES)
    garbage = tmp_path / "models" / "broken.onnx"
    good = onnx_models(tmp_path, 2)
    garbage.write_bytes(b"not an onnx file")
    jobs = batch_file(
        tmp_path,
        [*good, str(garbage), "userpkg:hangs", "userpkg:crashes", "userpkg:small"],
        '[[entry]]\nmodel = "userpkg:*"\ninputs = ["1x4"]\n',
        batch="timeout_s = 30\nrecycle_after = 2",
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "edgepipe.pipeline", "batch", str(jobs), "-o", str(tmp_path / "out"), "--workers", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    runs = {r["job"]: r for r in json.loads((tmp_path / "out" / "batch.json").read_text())["runs"]}
    assert [runs[f"m{i}"]["status"] for i in range(2)] == ["done", "done"] and runs["userpkg_small"]["status"] == "done"
    assert runs["broken"]["status"] == "failed" and "broken.onnx" in runs["broken"]["error"]
    assert "exceeded the 30 s job timeout" in runs["userpkg_hangs"]["error"]
    assert "worker crashed (exit -9, SIGKILL)" in runs["userpkg_crashes"]["error"]
    workers = json.loads((tmp_path / "out" / "batch.json").read_text())["workers"]
    assert len(workers) >= 4 and all(w["peak_rss_mb"] > 100 for w in workers if w["jobs"])  # recycled, replaced
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert {r["job"] for r in rows if r["status"] == "failed"} == {"broken", "userpkg_hangs", "userpkg_crashes"}
    assert "## Failed" in (tmp_path / "out" / "summary.md").read_text()
    assert "failed: userpkg_hangs" in done.stdout.replace("\n", " ")
    assert_manifests_true(tmp_path / "out")  # failed jobs included: what they wrote is true
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budget]]\nformat = "tflite"\nmax_size = "1 MiB"\n')
    gate = edgepipe("gate", str(tmp_path / "out"), "--budgets", str(budgets), "--json")
    checks = json.loads(gate.stdout)["checks"]
    assert gate.returncode == 1 and sum(c["check"] == "max_size" and c["status"] == "pass" for c in checks) == 3
    assert {c["subject"] for c in checks if c["status"] == "fail"} == {
        "broken @batch",
        "userpkg_hangs @batch",
        "userpkg_crashes @batch",
    }


def test_sigkill_mid_batch_then_rerun_redoes_nothing_completed(tmp_path):
    models = onnx_models(tmp_path, 5)
    jobs, out = batch_file(tmp_path, models), tmp_path / "out"
    batch = subprocess.Popen(
        [sys.executable, "-m", "edgepipe.pipeline", "batch", str(jobs), "-o", str(out), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = json.loads((out / "batch.json").read_text()) if (out / "batch.json").is_file() else {}
        if state.get("counts", {}).get("done", 0) >= 2:
            break
        time.sleep(0.2)
    workers = psutil.Process(batch.pid).children(recursive=True)
    os.kill(batch.pid, signal.SIGKILL)
    batch.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "a worker outlived its killed batch"
    state = json.loads((out / "batch.json").read_text())
    finished = {r["job"]: r["run_dir"] for r in state["runs"] if r["status"] == "done"}
    assert 2 <= len(finished) < 5
    before = {
        job: json.loads((out / run_dir / "manifest.json").read_text())["stages"] for job, run_dir in finished.items()
    }
    rerun = edgepipe("batch", str(jobs), "-o", str(out), "--workers", "1")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs = {r["job"]: r for r in json.loads((out / "batch.json").read_text())["runs"]}
    assert {job for job, r in runs.items() if r["status"] == "cached"} == set(finished)  # nothing done is redone
    assert all(runs[job]["status"] == "done" for job in set(runs) - set(finished))
    manifests = assert_manifests_true(out)
    assert all(manifests[job]["stages"] == before[job] for job in finished)


def test_warm_cache_starts_no_worker_and_force_redoes_everything(tmp_path):
    jobs, out = batch_file(tmp_path, onnx_models(tmp_path, 2)), tmp_path / "out"
    assert edgepipe("batch", str(jobs), "-o", str(out), "--workers", "1").returncode == 0
    warm = edgepipe("batch", str(jobs), "-o", str(out), "--json")
    state = json.loads(warm.stdout)
    assert warm.returncode == 0 and state["counts"]["cached"] == 2 and state["workers"] == []
    forced = edgepipe("batch", str(jobs), "-o", str(out), "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["counts"]["done"] == 2


def test_a_bad_batch_file_gets_one_line_and_exit_2(tmp_path):
    """The exit-code contract through the CLI; every kind of mistake is in tests/pipeline/test_batch_config.py."""
    path = tmp_path / "jobs.toml"
    path.write_text('[batch]\nworkers = 2\n[matrix]\nmodels = ["cnn_digits"]\n')
    done = edgepipe("batch", str(path), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "batch.workers: unknown key" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out" / "batch.json").exists()
