"""Padded max pools: the same maxima in ONNX, and an int8 file whose calibration never sees float32's lowest."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgepipe.exporters.convert import export_tflite_variants
from edgepipe.exporters.onnx.fixes import padded_max_pools
from edgepipe.exporters.tflite.inspect import sentinel_scaled_tensors
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.specs import InputSpec, convert_layout
from edgepipe.pipeline.core.ledger import output_figures
from edgepipe.profilers.runtimes import open_tflite

SHAPE = (1, 3, 32, 32)


class _Stem(nn.Module):
    """resnet's stem and first residual add: Conv, ReLU, MaxPool(3, 2, 1), then a padded pool of a signed tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.signed_pool = nn.MaxPool2d(3, 2, 1)  # its input is a Conv's: may be negative

    def forward(self, x):
        y = self.pool(torch.relu(self.conv(x)))
        return self.signed_pool(self.body(y) + y)


def _onnx(tmp_path) -> tuple:
    torch.manual_seed(0)
    module = _Stem().eval()
    example = (torch.randn(SHAPE),)
    path = tmp_path / "stem.onnx"
    export_onnx(torch.export.export(module, example), example, ["x"], path, tmp_path / "export.log")
    return module, path


def test_same_maxima_with_zeros_after_relu_and_edges_elsewhere(tmp_path):
    _, path = _onnx(tmp_path)
    model = onnx.load(str(path))
    assert padded_max_pools(model) == 2
    modes = [next(a.s for a in n.attribute if a.name == "mode") for n in model.graph.node if n.op_type == "Pad"]
    assert modes == [b"constant", b"edge"]
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert all(not any(a.name == "pads" and any(a.ints) for a in n.attribute) for n in pools)
    x = {"x": np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32) * 5}
    before = ort.InferenceSession(str(path)).run(None, x)[0]
    after = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    np.testing.assert_array_equal(after, before)


def test_tf_same_padding_is_left_to_onnx2tf(tmp_path):
    """MaxPool(2, 2) of an odd size pads only its end, as TensorFlow's SAME does: one op stays one op."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2, 2, 0, ceil_mode=False)).eval()
    example = (torch.randn(1, 3, 9, 9),)
    export_onnx(torch.export.export(module, example), example, ["x"], tmp_path / "m.onnx", tmp_path / "log")
    assert padded_max_pools(onnx.load(str(tmp_path / "m.onnx"))) == 0


@pytest.mark.slow
def test_int8_of_a_padded_pool_runs_and_keeps_its_signal(tmp_path):
    """Before the fix, resnet18's int8 file aborted the process in TFLite's ADD (input scale 1.3e36)."""
    module, path = _onnx(tmp_path)
    rng = np.random.default_rng(2)
    calibration = {"x": rng.standard_normal((32, *SHAPE[1:])).astype(np.float32)}
    specs = (InputSpec("x", SHAPE, "float32", "NCHW"),)
    results = export_tflite_variants(path, tmp_path, ["fp32", "int8"], tmp_path / "convert.log", specs, calibration)
    int8 = results["int8"]
    assert sentinel_scaled_tensors(int8.path) == []
    assert "2 padded MaxPool(s) given an explicit Pad" in (tmp_path / "convert.log").read_text()
    x = rng.standard_normal(SHAPE).astype(np.float32)
    with torch.no_grad():
        reference = module(torch.from_numpy(x)).numpy()
    (out,) = open_tflite(int8.path).run({"x": convert_layout(x, "NCHW", int8.inputs[0].layout)}).values()
    got = convert_layout(np.asarray(out), int8.outputs[0].layout, "NCHW")
    assert output_figures("y", reference, got, None, 20.0).sqnr_db >= 20


@pytest.mark.slow
def test_a_sentinel_in_a_calibration_range_is_one_clear_error(tmp_path, monkeypatch):
    """Without the rewrite, onnx2tf's float32-lowest padding reaches calibration: refused before a runtime opens it."""
    from edgepipe.exporters.onnx import passes

    without = {name: p for name, p in passes.PASSES.items() if name != "padded_max_pools"}
    monkeypatch.setattr(passes, "PASSES", MappingProxyType(without))
    _, path = _onnx(tmp_path)
    calibration = {"x": np.random.default_rng(2).standard_normal((32, *SHAPE[1:])).astype(np.float32)}
    specs = (InputSpec("x", SHAPE, "float32", "NCHW"),)
    with pytest.raises(
        ExportError, match=r"stem.onnx -> int8: calibration gave tensor\(s\) model\w*/.*MaxPool.* a range no real"
    ):
        export_tflite_variants(path, tmp_path, ["fp32", "int8"], tmp_path / "convert.log", specs, calibration)
    assert not (tmp_path / "stem_int8.tflite").exists()
