"""The onnx package's PyTorch backend test models through edgepipe's export: the pass count may only grow."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conformance import backend_models as bm

EXPECTED_MODELS = {"pytorch-converted": 82, "pytorch-operator": 35}
# A convolution with weights: channels-last inputs and outputs and an IR-3 file with initializers.
KNOWN_GOOD = "test_Conv2d"


def _model(name: str) -> bm.BackendModel:
    return next(m for m in bm.discover() if m.name == name)


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory) -> list[bm.ModelResult]:
    """The whole suite, run once for this module (a few minutes: one onnx2tf conversion per model)."""
    return bm.run_all(tmp_path_factory.mktemp("conformance"), workers=os.cpu_count() or 1)


def test_discovers_every_model():
    models = bm.discover()
    found = {suite: sum(m.suite == suite for m in models) for suite in bm.SUITES}
    assert found == EXPECTED_MODELS
    assert all(sorted(m.path.glob("test_data_set_*")) for m in models)


def test_pass_count_does_not_drop(suite_results):
    assert len(suite_results) == sum(EXPECTED_MODELS.values())
    expected = json.loads(bm.EXPECTED.read_text())
    counts = bm.pass_counts(suite_results)
    failing = [f"{r.suite}/{r.name}: {r.reason}" for r in suite_results if not r.passed]
    for key, floor in expected.items():
        assert counts[key] >= floor, f"{key}: {counts[key]} pass, recorded {floor}; failing:\n" + "\n".join(failing)


def test_known_good_model_passes(tmp_path):
    result = bm.run_model(_model(KNOWN_GOOD), tmp_path)
    assert result.passed, result.reason
    assert result.max_abs_error is not None and result.max_abs_error <= 1e-4


def test_wrong_reference_output_fails(tmp_path):
    model = _model(KNOWN_GOOD)
    reference = bm.load_reference(model)
    wrong = bm.Reference(reference.inputs, {name: out + 0.5 for name, out in reference.outputs.items()})
    result = bm.run_model(model, tmp_path, wrong)
    assert not result.passed
    assert result.group == "parity: TFLite vs reference" and "max abs err" in result.reason


def test_comparison_rules():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    assert bm.compare_outputs({"y": ref}, {"y": ref + 5e-5}).verdict == "match"
    assert bm.compare_outputs({"y": ref}, {"y": ref + 1e-3}).verdict == "mismatch"
    assert bm.compare_outputs({"y": ref}, {"y": ref.transpose(0, 2, 3, 1)}).verdict == "match after NHWC->NCHW"
    assert bm.compare_outputs({"y": ref}, {}).verdict == "mismatch"
    # The tolerance scales with the reference's magnitude above 1, over finite values only.
    big = ref * 1000
    assert bm.compare_outputs({"y": big}, {"y": big + 0.05}).verdict == "match"
    with_nan = np.array([1.0, np.nan, 4.0], np.float32)
    assert bm.compare_outputs({"y": with_nan}, {"y": with_nan.copy()}).verdict == "match"
    assert bm.compare_outputs({"y": with_nan}, {"y": np.array([1.0, 2.0, 4.0], np.float32)}).verdict == "mismatch"


def test_doc_lists_every_model(suite_results):
    text = bm.render_markdown(suite_results, 1.0)
    assert all(f"| {r.name} |" in text for r in suite_results)
    assert "1e-4 * max(1, max |reference|)" in text
