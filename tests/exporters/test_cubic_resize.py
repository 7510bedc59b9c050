"""Bicubic resizes as two constant MatMuls: ONNX Runtime's numbers in every coordinate mode, and a TFLite
file of builtin ops where onnx2tf alone writes FlexResizeBicubic."""

from __future__ import annotations

import itertools
from types import MappingProxyType

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, numpy_helper

from edgepipe.exporters.convert import export_tflite
from edgepipe.exporters.onnx.cubic_resize import cubic_resizes_as_matmuls
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.specs import InputSpec, convert_layout
from edgepipe.profilers.runtimes import open_tflite


def _resize_model(shape, out, by="sizes", scales=None, **attributes) -> onnx.ModelProto:
    if by == "sizes":
        initializer, inputs = numpy_helper.from_array(np.array(out, np.int64), "sizes"), ["x", "", "", "sizes"]
    else:
        given = scales or [o / i for o, i in zip(out, shape)]
        initializer, inputs = numpy_helper.from_array(np.array(given, np.float32), "scales"), ["x", "", "scales"]
    node = oh.make_node("Resize", inputs, ["y"], **{"mode": "cubic", **attributes})
    graph = oh.make_graph(
        [node],
        "resize",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [initializer],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize(
    "mode, exclude, sizes, by",
    list(
        itertools.product(
            ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"],
            [0, 1],
            [(24, 20, 16, 30), (7, 5, 14, 3), (8, 8, 1, 1)],
            ["sizes", "scales"],
        )
    ),
)
def test_the_matmuls_give_onnx_runtimes_resize(mode, exclude, sizes, by):
    h, w, out_h, out_w = sizes
    shape, out = (2, 3, h, w), (2, 3, out_h, out_w)
    model = _resize_model(shape, out, by, coordinate_transformation_mode=mode, exclude_outside=exclude)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    reference = _run(model, x)
    assert cubic_resizes_as_matmuls(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul"]
    np.testing.assert_allclose(_run(model, x), reference, rtol=0, atol=2e-6 * np.abs(reference).max())


@pytest.mark.parametrize(
    "why, build",
    [
        ("antialiased", lambda: _resize_model((1, 3, 16, 16), (1, 3, 8, 8), antialias=1)),
        ("resizes the channels", lambda: _resize_model((1, 3, 8, 8), (1, 6, 8, 8))),
        ("not 4-D", lambda: _resize_model((3, 8, 8), (3, 16, 16))),
        (
            "crops a region",
            lambda: _resize_model((1, 3, 8, 8), (1, 3, 4, 4), coordinate_transformation_mode="tf_crop_and_resize"),
        ),
    ],
)
def test_what_it_cannot_express_is_left_alone(why, build):
    model = build()
    assert cubic_resizes_as_matmuls(model) == 0, why
    assert [n.op_type for n in model.graph.node] == ["Resize"]


class _TwoSizes(torch.nn.Module):
    """crossvit's way: one branch sees the image resized bicubically (240 -> 224 there)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        small = F.interpolate(x, size=(12, 10), mode="bicubic", align_corners=False)
        return self.conv(x).mean((2, 3)) + self.conv(small).mean((2, 3))


@pytest.mark.slow
def test_a_bicubic_model_converts_to_builtin_ops_with_its_numbers(tmp_path, monkeypatch):
    from edgepipe.exporters.onnx import passes

    torch.manual_seed(0)
    module, x = _TwoSizes().eval(), torch.randn(1, 3, 16, 16)
    path = tmp_path / "two_sizes.onnx"
    export_onnx(torch.export.export(module, (x,)), (x,), ["x"], path, tmp_path / "export.log")
    specs = (InputSpec("x", (1, 3, 16, 16), "float32", "NCHW"),)
    result = export_tflite(path, tmp_path / "two_sizes.tflite", "fp32", tmp_path / "convert.log", specs)
    assert "cubic_resizes_as_matmuls: 1 bicubic Resize(s)" in (tmp_path / "convert.log").read_text()
    (out,) = open_tflite(result.path).run({"x": convert_layout(x.numpy(), "NCHW", result.inputs[0].layout)}).values()
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(out), module(x).numpy(), rtol=0, atol=1e-5)
    # Without the pass, onnx2tf's file needs the Flex op, which edgepipe refuses.
    without = {name: p for name, p in passes.PASSES.items() if name != "cubic_resizes_as_matmuls"}
    monkeypatch.setattr(passes, "PASSES", MappingProxyType(without))
    with pytest.raises(ExportError, match="FlexResizeBicubic"):
        export_tflite(path, tmp_path / "flex.tflite", "fp32", tmp_path / "flex.log", specs)
