"""Each structure channel pruning follows, pruned by `edgepipe run` and exported with its ledger ok."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import edgepipe_here
from tests.models.pruning_structures import STRUCTURES

JOB = """
[job]
name = "{name}"
model = "tests.models.pruning_structures:{name}"

[train]
data = "train.npz"
epochs = 3

[compress]
prune = "channels"
prune_amount = 0.5
finetune_epochs = 1

[export]
variants = ["fp32"]

[profile]
runtimes = ["tflite"]
min_runs = 10
min_seconds = 0.01
op_profile = false
throughput_batches = []
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_a_pruned_structure_exports_with_its_ledger_ok(tmp_path, name):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(
        tmp_path / "train.npz", x=(digits.images[:600] / 16).astype(np.float32)[:, None], labels=digits.target[:600]
    )
    (tmp_path / "job.toml").write_text(JOB.format(name=name))
    done = edgepipe_here("run", "job.toml", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    stages = json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]
    compress = stages["compress"]["result"]
    assert compress["compressed"]["parameters"] < 0.75 * compress["trained"]["parameters"]
    ledger = stages["validate"]["result"]["ledger"]
    assert set(ledger) == {"torch:fp32", "onnx:fp32", "tflite:fp32"} and all(h["ok"] for h in ledger.values())


@pytest.mark.slow
def test_a_latency_target_is_searched_on_converted_files_timed_interleaved(tmp_path):
    job = JOB.format(name="residual").replace('data = "train.npz"\nepochs = 3\n', "")
    job = job.replace("prune_amount = 0.5", "prune_target = {latency = 0.8}").replace(
        "finetune_epochs = 1", "finetune_epochs = 0"
    )
    (tmp_path / "job.toml").write_text(job)
    done = edgepipe_here("run", "job.toml", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads((tmp_path / "out" / "prune_plan.json").read_text())
    trials = plan["latency_trials"]
    assert plan["target"] == ["latency", 0.8] and len(trials) == 5
    assert all(t["p50_ratio"] > 0 for t in trials) and 0 < plan["amount"] <= 0.95
    # bisection: the chosen amount is the smallest tried whose file met the target (or the upper end)
    met = [t["amount"] for t in trials if t["p50_ratio"] <= 0.8]
    assert plan["amount"] == pytest.approx(min(met)) if met else plan["amount"] == 0.95
