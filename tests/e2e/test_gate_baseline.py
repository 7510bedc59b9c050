"""--baseline: a 30 % slower model fails the gate, a rerun of the same model does not; [gate] in a job."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from profilers.calibration import matmul_chain
from tests.conftest import edgepipe


def job(tmp: Path, model: Path, name: str, gate: str = "") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f'[job]\nname = "chain"\nmodel = "{model}"\n[export]\nvariants = ["fp32"]\n'
                    '[profile]\nruntimes = ["onnxruntime"]\nwarmup_seconds = 0.3\nmin_runs = 300\n'
                    'min_seconds = 1.5\nop_profile = false\nthroughput_batches = []\n' + gate)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    # 40 % more work, >= 30 % slower; (1, 16, 256): ~0.4 ms a call, so work, not per-call overhead, sets the time
    base, slow = (matmul_chain(tmp / f"{name}.onnx", depth, (1, 16, 256)) for name, depth in (("base", 10), ("slow", 14)))
    budgets = tmp / "budgets.toml"
    budgets.write_text('[[budget]]\nformat = "onnx"\nmax_size = "10 MiB"\n[baseline]\nlatency_tolerance = 0.10\n')
    out = {}
    for name, model in (("old", base), ("rerun", base), ("slow", slow)):
        done = edgepipe("run", str(job(tmp, model, name)), "-o", str(tmp / name))
        assert done.returncode == 0, done.stderr
        out[name] = tmp / name
    return {"dir": tmp, "budgets": budgets, "slow_model": slow, **out}


def gate(runs, new: str) -> dict:
    done = edgepipe("gate", str(runs[new]), "--budgets", str(runs["budgets"]), "--baseline", str(runs["old"]), "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def latency_check(verdict: dict) -> dict:
    return next(c for c in verdict["checks"] if c["check"] == "p90 vs baseline" and "onnx:fp32" in c["subject"])


def test_a_rerun_of_the_same_model_passes(runs):
    verdict = gate(runs, "rerun")
    assert verdict["passed"], [c for c in verdict["checks"] if c["status"] == "fail"]
    assert latency_check(verdict)["status"] == "pass"


def test_a_30_percent_slower_model_fails_on_latency(runs):
    p50 = {name: json.loads((runs[name] / "profile.json").read_text())["results"][0]["latency_ms"]["p50"]
           for name in ("old", "slow")}
    assert p50["slow"] > 1.3 * p50["old"]  # the injected slowdown is real
    verdict = gate(runs, "slow")
    check = latency_check(verdict)
    assert not verdict["passed"] and check["status"] == "fail", check
    assert check["value"] > check["limit"]
    size = next(c for c in verdict["checks"] if c["check"] == "size vs baseline" and "onnx:fp32" in c["subject"])
    assert size["status"] == "fail"  # 13 weight matrices are bigger than 10: exact, no tolerance


def test_a_job_with_a_gate_section_runs_it_last_and_exits_1(runs):
    gate_section = f'[gate]\nbudgets = "{runs["budgets"]}"\nbaseline = "{runs["old"]}"\n'
    out = runs["slow"]  # the same job plus [gate]: every other stage comes from the cache
    done = edgepipe("run", str(job(runs["dir"], runs["slow_model"], "gated", gate_section)), "-o", str(out))
    assert done.returncode == 1 and "gate failed" in done.stderr
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert list(stages)[-1] == "gate" and "profile" in stages
    assert json.loads((out / "gate.json").read_text())["passed"] is False
    assert "<failure" in (out / "junit.xml").read_text() and (out / "gate.md").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert {a["path"] for a in manifest["artifacts"] if a["stage"] == "gate"} == {"gate.json", "gate.md", "junit.xml"}
