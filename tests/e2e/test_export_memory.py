"""`edgepipe export --converter child|in_process`: which process converts, and the memory the manifest records."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import edgepipe_here

FACTORY = textwrap.dedent("""
    from torch import nn


    def conv():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
""")
TRANSLATING = "export: onnx2tf translating the graph to TensorFlow"
RUN_AHEAD = "export: running validation's PyTorch and ONNX side while the converter works"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    (root / "tiny_models.py").write_text(FACTORY)
    return root


def _export(project, out: str, *options: str) -> dict:
    """The run's manifest after `edgepipe export tiny_models:conv` with these options."""
    result = edgepipe_here(
        "export", "tiny_models:conv", "--input", "1x3x16x16", "--variant", "fp32", "-o", str(project / out), *options,
        cwd=project,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads((project / out / "manifest.json").read_text())


@pytest.mark.parametrize("converter", ["child", "in_process"])
def test_the_converter_setting_picks_the_process_and_the_manifest_records_the_memory(project, converter):
    stages = _export(project, converter, "--converter", converter)["stages"]
    record, memory = stages["export"]["result"]["converter"], stages["export"]["memory"]
    assert record["process"] == converter
    phases = {p["phase"]: p for p in memory["phases"]}
    assert memory["status"] == "measured" and TRANSLATING in phases
    assert memory["peak_sum_mib"] >= memory["peak_edgepipe_mib"] > 0
    # the kernel's mark; a sampled VmRSS can read a fraction of a MiB above it (per-thread RSS counters)
    assert memory["edgepipe_hwm_mib"] >= memory["peak_edgepipe_mib"] - 1
    if converter == "child":
        assert record["hwm_mib"] > 0  # the child's own VmHWM, sent with its result
        assert phases[TRANSLATING]["children_mib"] > 0 and RUN_AHEAD in phases
    else:
        assert memory["peak_children_mib"] == 0 and RUN_AHEAD not in phases
    assert stages["validate"]["memory"]["status"] == "measured"
    onnxsim = next(p["detail"] for p in stages["export"]["result"]["onnx_passes"] if p["name"] == "onnxsim")
    assert not onnxsim.startswith("skipped"), onnxsim  # it runs in the child too, where TensorFlow loaded first
    ledger = json.loads((project / converter / "ledger.json").read_text())
    assert all(h["ok"] for h in ledger["hops"]) and {h["hop"] for h in ledger["hops"]} >= {"torch -> tflite:fp32"}


def test_a_converter_choice_it_does_not_know_is_bad_input(project):
    result = edgepipe_here("export", "tiny_models:conv", "--input", "1x3x16x16", "--converter", "thread", cwd=project)
    assert result.returncode == 2
    assert "--converter 'thread' is unknown; choose auto, child, in_process" in result.stderr


def test_outputs_too_large_to_hold_beside_the_converter_are_left_to_validation(project, monkeypatch):
    monkeypatch.setattr("edgepipe.pipeline.stages.export.AHEAD_LIMIT_MIB", 0.0)
    stages = _export(project, "not-ahead", "--converter", "child")["stages"]
    assert RUN_AHEAD not in {p["phase"] for p in stages["export"]["memory"]["phases"]}
    log = (project / "not-ahead" / "logs" / "convert.log").read_text()
    assert "edgepipe: validation outputs not run ahead: they would hold 0 MiB" in log
    ledger = json.loads((project / "not-ahead" / "ledger.json").read_text())
    assert [h["hop"] for h in ledger["hops"] if h["ok"]][:1] == ["torch -> torch:fp32"]
    assert all(h["ok"] for h in ledger["hops"])
