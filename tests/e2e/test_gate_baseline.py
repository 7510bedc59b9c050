"""--baseline: a model over 30 % slower fails the gate, a rerun of the same model does not; [gate] in a job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepipe.profilers.calibration import matmul_chain
from tests.conftest import edgepipe


def job(tmp: Path, model: Path, name: str, gate: str = "") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f'[job]\nname = "chain"\nmodel = "{model}"\n[export]\nvariants = ["fp32"]\n'
        '[profile]\nruntimes = ["onnxruntime"]\nwarmup_seconds = 0.3\nmin_runs = 300\n'
        "min_seconds = 1.5\nop_profile = false\nthroughput_batches = []\n" + gate
    )
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    # 60 % more work: 40 % more measured 1.14x-1.45x slower from run to run here. (1, 16, 256): ~0.25 ms a
    # call, so work, not per-call overhead, sets the time, and a call rarely spans a preemption under load
    base, slow = (
        matmul_chain(tmp / f"{name}.onnx", depth, (1, 16, 256)) for name, depth in (("base", 10), ("slow", 16))
    )
    budgets = tmp / "budgets.toml"
    # 0.25, not the default 0.10: nine runs of the base model here gave p90s from 0.289 to 0.350 ms (sd 5 %),
    # and in a full test run a rerun of the same model once read 22.6 % slower than "old": a spread between
    # processes that no interval from within one run can see. The slow model is made > 1.3x below.
    budgets.write_text('[[budget]]\nformat = "onnx"\nmax_size = "10 MiB"\n[baseline]\nlatency_tolerance = 0.25\n')
    # Separate runs are unpaired: a busy spell on a shared CI runner once made "old" 25 % slower than on a
    # quiet machine and hid the injected slowdown (p50 0.311 vs 0.339 ms). The slowdown must show in the two
    # reports, beyond the slow run's own interval, before the gate is asked about it, so a pair the machine
    # blurred is profiled again, at most twice.
    for attempt in range(3):
        out = {name: profiled(tmp, model, f"{name}{attempt}") for name, model in (("old", base), ("slow", slow))}
        if slower_by(out["slow"], out["old"]) > 1.3:
            break
        print(f"attempt {attempt}: slow was only {slower_by(out['slow'], out['old']):.3f}x old; profiling again")
    out["rerun"] = profiled(tmp, base, "rerun")
    return {"dir": tmp, "budgets": budgets, "slow_model": slow, **out}


def profiled(tmp: Path, model: Path, name: str) -> Path:
    done = edgepipe("run", str(job(tmp, model, name)), "-o", str(tmp / name))
    assert done.returncode == 0, done.stderr
    return tmp / name


def slower_by(new: Path, old: Path) -> float:
    """The smaller of new/old p50 and (the low end of new's p90 interval)/(old p90), which the gate judges."""
    new_l, old_l = (json.loads((run / "profile.json").read_text())["results"][0]["latency_ms"] for run in (new, old))
    return min(new_l["p50"] / old_l["p50"], new_l["ci95"]["p90"][0] / old_l["p90"])


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


def test_a_model_over_30_percent_slower_fails_on_latency(runs):
    assert slower_by(runs["slow"], runs["old"]) > 1.3  # the injected slowdown is real
    verdict = gate(runs, "slow")
    check = latency_check(verdict)
    assert not verdict["passed"] and check["status"] == "fail", check
    assert check["value"] > check["limit"]
    size = next(c for c in verdict["checks"] if c["check"] == "size vs baseline" and "onnx:fp32" in c["subject"])
    assert size["status"] == "fail"  # 16 weight matrices are bigger than 10: exact, no tolerance


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
