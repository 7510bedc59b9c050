"""The stage graph: a stage reads only the results it declares, and a changed setting reruns exactly
the stages that depend on it (and nothing is taken from the cache that should not be)."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from edgepipe.pipeline.core.config import default_job_text, validate_job
from edgepipe.pipeline.core.context import DeclaredResults
from edgepipe.pipeline.core.runner import run_job


def test_reading_an_undeclared_result_raises():
    results = DeclaredResults("report", ("validate", "compress"), {"validate": {"ok": 1}, "export": {"x": 2}})
    assert results["validate"] == {"ok": 1} and dict(results) == {"validate": {"ok": 1}}
    assert results.get("compress", {}) == {}  # declared, but not run in this job
    with pytest.raises(RuntimeError, match="reads the 'export' result, which it does not declare"):
        results["export"]
    with pytest.raises(RuntimeError, match="does not declare"):
        results.get("export", {})


def _job(**changes):
    data = tomllib.loads(default_job_text())
    data.pop("gate")
    data["compress"]["prune"] = "none"
    data["job"].update(name="graph", model="mlp_tabular")
    data["train"].update(epochs=1, threads=1)
    data["export"]["variants"] = ["fp32"]
    data["profile"].update(
        runtimes=["onnxruntime"],
        warmup_runs=2,
        min_runs=5,
        min_seconds=0.0,
        op_profile=False,
        throughput_batches=[],
        device="host",
    )
    for section, values in changes.items():
        data[section].update(values)
    return validate_job(data, "test")


# (section, setting) -> the stages that must run again; every other stage comes from the cache
CHANGES = [
    ("train", {"epochs": 2}, {"train", "compress", "export", "validate", "profile", "report"}),
    ("export", {"variants": ["fp32", "fp16"]}, {"export", "validate", "profile", "report"}),
    ("validate", {"rel_tolerance": 2e-4}, {"validate", "report"}),
    ("profile", {"min_runs": 6}, {"profile", "report"}),
]


@pytest.mark.slow
def test_a_changed_setting_reruns_exactly_its_dependents(tmp_path):
    run_dir = tmp_path / "run"
    first = run_job(_job(), run_dir)
    stages = set(first.stages)
    assert stages == {"train", "compress", "export", "validate", "profile", "report"}
    assert not any(r["cached"] for r in first.stages.values())
    again = run_job(_job(), run_dir)
    assert all(r["cached"] for r in again.stages.values()), again.stages  # nothing changed: all from the cache
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, features=np.random.default_rng(0).standard_normal((8, 30)).astype(np.float32))
    # profile times every file on one held-out sample: where that sample comes from is its setting too
    read_inputs = ("validate", {"inputs": str(inputs)}, {"validate", "profile", "report"})
    for section, values, dependents in [*CHANGES, read_inputs]:
        changed = run_job(_job(**{section: values}), run_dir)
        ran = {name for name, record in changed.stages.items() if not record["cached"]}
        assert ran == dependents, (section, values, ran)
        run_job(_job(), run_dir)  # back to the base job for the next change
