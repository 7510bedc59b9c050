"""ONNX-level fixes: exact GELU in every spelling becomes one TFLite GELU, ConvNeXt blocks convert
channels-first with native depthwise convolutions; look-alikes are left alone."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgepipe.exporters.convert import export_tflite
from edgepipe.exporters.onnx.channels_first import channels_first_blocks
from edgepipe.exporters.onnx.fixes import batchnorm_between_reshapes, canonical_gelu, spelt_hard_swish
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.specs import convert_layout
from edgepipe.profilers.runtimes import open_tflite


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


# Each spelling: nodes after y = x @ w (so x is not a graph input), from "y" to "out".
SPELLINGS = {
    "torch": [  # what torch.onnx writes for nn.GELU: Mul(x, Mul(0.5, Add(Erf(x / sqrt 2), 1)))
        helper.make_node("Div", ["y", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["half", "a"], ["m"]),
        helper.make_node("Mul", ["y", "m"], ["out"]),
    ],
    "half_first": [  # Mul(Mul(x, 0.5), Add(1, Erf(x * (1 / sqrt 2))))
        helper.make_node("Mul", ["y", "inv_sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["one", "e"], ["a"]),
        helper.make_node("Mul", ["y", "half"], ["h"]),
        helper.make_node("Mul", ["h", "a"], ["out"]),
    ],
    "x_first": [  # Mul(Mul(x, Add(Erf(x / sqrt 2), 1)), 0.5)
        helper.make_node("Div", ["y", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["a", "y"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["out"]),
    ],
}


def _model(nodes: list, one: float = 1.0) -> onnx.ModelProto:
    weights = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), *nodes],
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 8])],
        [
            numpy_helper.from_array(weights, "w"),
            _const("sqrt2", 1.4142135),
            _const("inv_sqrt2", 0.70710677),
            _const("one", one),
            _const("half", 0.5),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_exact_gelu_becomes_one_tflite_gelu(spelling, tmp_path):
    model = _model(SPELLINGS[spelling])
    onnx.save(model, tmp_path / "model.onnx")
    result = export_tflite(tmp_path / "model.onnx", tmp_path / "model.tflite", "fp32", tmp_path / "convert.log")
    assert result.op_histogram == {"FULLY_CONNECTED": 1, "GELU": 1} and result.custom_ops == ()
    x = 3 * np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    expected = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"x": x})[0]
    got = open_tflite(result.path).run({"x": x})["out"]
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    assert "1 exact GELU(s) respelt" in (tmp_path / "convert.log").read_text()


def test_look_alikes_are_left_alone():
    not_gelu = _model(SPELLINGS["torch"], one=2.0)  # 0.5 x (2 + erf(x / sqrt 2)) is not GELU
    assert canonical_gelu(not_gelu) == 0
    shared = _model(SPELLINGS["torch"])  # the Erf's output read twice: the chain cannot be replaced whole
    shared.graph.output.append(helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 8]))
    assert canonical_gelu(shared) == 0
    assert [n.op_type for n in shared.graph.node] == ["MatMul", "Div", "Erf", "Add", "Mul", "Mul"]


class _LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d: normalise channels by permuting them last and back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    """torchvision's CNBlock: 7x7 depthwise, then LayerNorm, Linear, GELU, Linear on the last axis."""

    def __init__(self, channels: int):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.mlp = nn.Sequential(
            nn.LayerNorm(channels), nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels)
        )
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), 0.5))

    def forward(self, x):
        return x + self.layer_scale * self.mlp(self.dw(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _linear_norm(back: list[int]) -> onnx.ModelProto:
    """MatMul on (1, 6, 8) tokens, then BatchNorm over them flattened to (6, 8), reshaped to `back`."""
    rng = np.random.default_rng(0)
    stats = [rng.uniform(0.5, 2, 8), rng.standard_normal(8), rng.standard_normal(8), rng.uniform(0.5, 2, 8)]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y"]),
            helper.make_node("Reshape", ["y", "flat"], ["f"]),
            helper.make_node("BatchNormalization", ["f", "g", "b", "m", "v"], ["n"], epsilon=1e-3),
            helper.make_node("Reshape", ["n", "back"], ["out"]),
        ],
        "linear_norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([6, 8], np.int64), "flat"),
            numpy_helper.from_array(np.array(back, np.int64), "back"),
            *(numpy_helper.from_array(a.astype(np.float32), n) for a, n in zip(stats, "gbmv")),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_batchnorm_between_reshapes_becomes_an_affine_on_the_last_axis():
    model, x = _linear_norm([1, 6, 8]), np.random.default_rng(1).standard_normal((1, 6, 8)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert batchnorm_between_reshapes(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Mul", "Add"]
    assert {i.name for i in model.graph.initializer} == {"w", "n__scale", "n__shift"}
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    other = _linear_norm([1, 8, 6])  # reshaped back to another shape: the reshapes are not a round trip
    assert batchnorm_between_reshapes(other) == 0 and len(other.graph.node) == 4


def test_a_hard_swish_after_a_matmul_stays_one_op(tmp_path):
    # onnx2tf's own HardSwish after MatMul + bias becomes a copy of the matmul for the "+ 3" (3 FC)
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["y"]),
            helper.make_node("Add", ["y", "b1"], ["h"]),
            helper.make_node("HardSwish", ["h"], ["s"]),
            helper.make_node("MatMul", ["s", "w2"], ["out"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, 8])],
        [
            numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
            for name, shape in (("w1", (8, 16)), ("b1", (16,)), ("w2", (16, 8)))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, tmp_path / "model.onnx")
    x = 3 * rng.standard_normal((4, 8)).astype(np.float32)
    expected = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"x": x})[0]
    respelt = onnx.load(tmp_path / "model.onnx")
    assert spelt_hard_swish(respelt) == 1 and "HardSwish" not in {n.op_type for n in respelt.graph.node}
    same = ort.InferenceSession(respelt.SerializeToString()).run(None, {"x": x})[0]
    assert np.abs(same - expected).max() <= 1e-5 * np.abs(expected).max()
    result = export_tflite(tmp_path / "model.onnx", tmp_path / "model.tflite", "fp32", tmp_path / "convert.log")
    assert result.op_histogram == {"FULLY_CONNECTED": 2, "HARD_SWISH": 1}
    got = open_tflite(result.path).run({"x": x})["out"]
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def _convnext_like() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 4, 4),
        _LayerNorm2d(16),
        _ConvNeXtBlock(16),
        _ConvNeXtBlock(16),
        _LayerNorm2d(16),
        nn.Conv2d(16, 32, 2, 2),
        _ConvNeXtBlock(32),
    ).eval()


@pytest.mark.slow
def test_convnext_blocks_convert_channels_first(tmp_path):
    model, x = _convnext_like(), torch.randn(1, 3, 64, 64)
    onnx_file = export_onnx(torch.export.export(model, (x,)), (x,), ["x"], tmp_path / "model.onnx", tmp_path / "log")
    result = export_tflite(onnx_file.path, tmp_path / "model.tflite", "fp32", tmp_path / "convert.log")
    ops = result.op_histogram
    # three 7x7 depthwise convs, and a 1x1 one per LayerNorm for its scale and shift; every Linear a 1x1 conv
    assert ops["DEPTHWISE_CONV_2D"] == 3 + 5 and ops["GELU"] == 3 and "FULLY_CONNECTED" not in ops
    assert ops["CONV_2D"] == 2 + 2 * 3 and ops.get("TRANSPOSE", 0) <= 2
    assert (
        "5 channels-last block(s) between transposes rewritten channels-first" in (tmp_path / "convert.log").read_text()
    )
    with torch.no_grad():
        expected = model(x).numpy()
    got = open_tflite(result.path).run({"x": x.numpy().transpose(0, 2, 3, 1).copy()})["output_0"]
    got = convert_layout(got, result.outputs[0].layout, "NCHW")
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_block_with_a_vector_add_of_its_own_is_left_alone():
    class ShiftLast(nn.Module):  # x + b on the last axis, with no Linear to take b as its bias
        def __init__(self):
            super().__init__()
            self.shift = nn.Parameter(torch.arange(8.0))

        def forward(self, x):
            return (x.permute(0, 2, 3, 1) + self.shift).permute(0, 3, 1, 2)

    x = torch.randn(1, 8, 4, 6)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "m.onnx"
        export_onnx(torch.export.export(ShiftLast(), (x,)), (x,), ["x"], path, Path(work) / "log")
        model = onnx.load(path)
    assert channels_first_blocks(model) == 0


@pytest.mark.slow
def test_strict_translation_when_the_fast_one_fails(tmp_path, monkeypatch):
    # Without the channels-first rewrite, onnx2tf's fast translation of these blocks breaks on the
    # layer scale's broadcast; the strict one (layouts by trial) converts them.

    from edgepipe.exporters.onnx import passes

    without = {name: p for name, p in passes.PASSES.items() if name != "channels_first_blocks"}
    monkeypatch.setattr(passes, "PASSES", MappingProxyType(without))
    model, x = _convnext_like(), torch.randn(1, 3, 64, 64)
    onnx_file = export_onnx(torch.export.export(model, (x,)), (x,), ["x"], tmp_path / "model.onnx", tmp_path / "log")
    result = export_tflite(onnx_file.path, tmp_path / "model.tflite", "fp32", tmp_path / "convert.log")
    assert "onnx2tf: the fast translation failed: onnx2tf" in (tmp_path / "convert.log").read_text()
    with torch.no_grad():
        expected = model(x).numpy()
    got = open_tflite(result.path).run({"x": x.numpy().transpose(0, 2, 3, 1).copy()})["output_0"]
    got = convert_layout(got, result.outputs[0].layout, "NCHW")
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
