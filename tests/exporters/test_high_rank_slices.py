"""Slices of tensors above five dimensions are taken with their whole axes merged: the same values, and a
TFLite file with builtin ops only."""

import json
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepipe.exporters.onnx.high_rank_slices import slices_at_most_5d
from tests.conftest import edgepipe


def _slice_model(shape, starts, ends, axes, steps=None):
    inits = [
        numpy_helper.from_array(np.array(v, np.int64), n)
        for n, v in (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))
        if v is not None
    ]
    node = helper.make_node("Slice", ["x", *[i.name for i in inits]], ["y"], name="cut")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize(
    "shape, starts, ends, axes, steps, rank",
    [
        ((3, 1, 2, 4, 5, 6), [1], [2], [0], None, 2),  # NesT's unbind of q, k and v
        ((3, 1, 2, 4, 5, 6), [0, -1], [3, -6], [0, -3], [2, -1], 4),  # two axes, negative axis, start and step
        ((2, 3, 4, 5, 6, 7), [1, 1], [9, 3], [1, 5], None, 4),  # an end past the axis
    ],
)
def test_a_high_rank_slice_gives_the_same_values_at_five_dimensions_or_fewer(shape, starts, ends, axes, steps, rank):
    model = _slice_model(shape, starts, ends, axes, steps)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    before = _run(model, x)
    assert slices_at_most_5d(model) == 1
    assert np.array_equal(_run(model, x), before)
    (merged,) = [n for n in model.graph.node if n.op_type == "Reshape" and n.name == "cut__in"]
    shapes = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert len(shapes[merged.input[1]]) == rank <= 5


def test_slices_that_cannot_merge_to_five_dimensions_or_that_need_none_are_left():
    seven = _slice_model((2, 2, 2, 2, 2, 2, 2), [0, 0, 0, 0], [1, 1, 1, 1], [0, 2, 4, 6])
    assert slices_at_most_5d(seven) == 0  # seven groups
    five = _slice_model((3, 1, 2, 4, 5), [1], [2], [0])
    assert slices_at_most_5d(five) == 0


MODEL = textwrap.dedent("""
    import torch
    import torch.nn.functional as F


    class BlockAttention(torch.nn.Module):
        # NesT's attention within blocks: q, k and v split from one [3, batch, heads, blocks, tokens, dim] tensor
        def __init__(self, dim=32, heads=2):
            super().__init__()
            self.heads, self.qkv, self.proj = heads, torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)

        def forward(self, x):
            b, t, n, c = x.shape
            qkv = self.qkv(x).reshape(b, t, n, 3, self.heads, c // self.heads).permute(3, 0, 4, 1, 2, 5)
            out = F.scaled_dot_product_attention(*qkv.unbind(0))
            return self.proj(out.permute(0, 2, 3, 4, 1).reshape(b, t, n, c))


    def block():
        return BlockAttention().eval(), torch.randn(1, 4, 16, 32)
""")


def test_nest_attention_converts_with_builtin_ops_only(tmp_path):
    (tmp_path / "nest_like.py").write_text(MODEL)
    done = edgepipe("export", "nest_like:block", "-o", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # before: FlexStridedSlice, refused
    summary = json.loads(done.stdout)
    (tflite,) = [a for a in summary["artifacts"] if a["format"] == "tflite"]
    assert tflite["ledger"]["ok"] and tflite["custom_ops"] == [] and tflite["op_histogram"]["STRIDED_SLICE"] == 3
    assert any(p["name"] == "slices_at_most_5d" for p in summary["onnx_passes"])
