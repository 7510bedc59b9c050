"""MobileViTv2's two patterns that onnx2tf translated wrong (issue 32): GroupNorm with one group, and
a bilinear resize with align_corners. Each converts for real and is checked against PyTorch at the
ledger's relative tolerance."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

from edgepipe.exporters.convert import export_tflite_variants
from edgepipe.exporters.onnx.group_norm import single_group_norms
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.specs import InputSpec, convert_layout
from edgepipe.profilers.runtimes import open_tflite

REL_TOLERANCE = 1e-4  # the ledger's for fp32


class _OneGroupNorms(nn.Module):
    """Convs around two GroupNorm(1, C) (timm's GroupNorm1), one with a learned per-channel affine."""

    def __init__(self):
        super().__init__()
        self.expand, self.project = nn.Conv2d(4, 24, 1), nn.Conv2d(24, 4, 1)
        self.plain, self.affine = nn.GroupNorm(1, 24), nn.GroupNorm(1, 24)
        with torch.no_grad():
            self.affine.weight.uniform_(0.5, 1.5)
            self.affine.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.project(self.affine(self.plain(self.expand(x)) * 3.0))


class _AlignCornersResize(nn.Module):
    """mobilevitv2 at 224x224: a 7x7 map stretched to 8x8 before its 2x2 patches, bilinear, align_corners."""

    def __init__(self):
        super().__init__()
        self.before, self.after = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.after(F.interpolate(self.before(x), size=(8, 8), mode="bilinear", align_corners=True))


def _converted(module: nn.Module, shape: tuple, tmp_path):
    """(fp32 TFLite output, PyTorch output, the export record, conversion log) on one seeded input."""
    torch.manual_seed(0)
    module = module.eval()
    example = (torch.randn(shape),)
    onnx_path = tmp_path / "m.onnx"
    export_onnx(torch.export.export(module, example), example, ["x"], onnx_path, tmp_path / "export.log")
    specs = (InputSpec("x", shape, "float32", "NCHW"),)
    result = export_tflite_variants(onnx_path, tmp_path, ["fp32"], tmp_path / "convert.log", specs)["fp32"]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    (out,) = open_tflite(result.path).run({"x": convert_layout(x, "NCHW", result.inputs[0].layout)}).values()
    got = convert_layout(np.asarray(out), result.outputs[0].layout, "NCHW")
    return got, expected, result, (tmp_path / "convert.log").read_text()


def _within_tolerance(got: np.ndarray, expected: np.ndarray) -> bool:
    return got.shape == expected.shape and np.abs(got - expected).max() <= REL_TOLERANCE * np.abs(expected).max()


def test_one_group_norms_translate_fast_without_reshapes(tmp_path):
    # Before the pass, onnx2tf's fast file normalised over a size-1 axis (every value its bias), and
    # edgepipe fell back to the strict translation, with two TRANSPOSEs and two RESHAPEs per norm.
    got, expected, result, log = _converted(_OneGroupNorms(), (1, 4, 12, 10), tmp_path)
    assert _within_tolerance(got, expected)
    assert "translating in strict mode" not in log
    # per norm: MEAN, SUB, MUL, MEAN, ADD, SQRT, DIV (1 / std, one value), MUL; then the affine and the * 3
    assert result.op_histogram == {
        "CONV_2D": 2,
        "MEAN": 4,
        "SUB": 2,
        "MUL": 2 * 2 + 1 + 1,
        "ADD": 2 + 1,
        "SQRT": 2,
        "DIV": 2,
    }
    assert "2 one-group GroupNorm(s) normalised over every non-batch axis" in log


def test_align_corners_resize_samples_the_corners(tmp_path):
    # onnx2tf 1.29 read the opset-18 Resize as tf.image.resize (half-pixel centres): 0.1 off on values of 1.
    got, expected, result, _ = _converted(_AlignCornersResize(), (1, 4, 7, 7), tmp_path)
    assert _within_tolerance(got, expected)
    assert result.op_histogram == {"CONV_2D": 2, "RESIZE_BILINEAR": 1}


def _group_norm_graph(groups: int, scale: float, bias: float) -> onnx.ModelProto:
    """x (1, 6, 4, 5) -> Reshape (1, G, -1) -> InstanceNormalization -> Reshape back, as torch writes it."""
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "flat"], ["f"]),
            helper.make_node("InstanceNormalization", ["f", "s", "b"], ["n"], epsilon=1e-5),
            helper.make_node("Reshape", ["n", "back"], ["y"]),
        ],
        "group_norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4, 5])],
        [
            numpy_helper.from_array(np.array([0, groups, -1], np.int64), "flat"),
            numpy_helper.from_array(np.array([1, 6, 4, 5], np.int64), "back"),
            numpy_helper.from_array(np.full(groups, scale, np.float32), "s"),
            numpy_helper.from_array(np.full(groups, bias, np.float32), "b"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_the_rewrite_keeps_a_scalar_scale_and_bias_and_leaves_several_groups_alone():
    model, x = _group_norm_graph(1, 1.7, -0.3), np.random.default_rng(2).standard_normal((1, 6, 4, 5)) * 4 + 2
    x = {"x": x.astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    assert single_group_norms(model) == 1
    assert not {"Reshape", "InstanceNormalization"} & {n.op_type for n in model.graph.node}
    got = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    several = _group_norm_graph(2, 1.0, 0.0)
    assert single_group_norms(several) == 0 and len(several.graph.node) == 3
