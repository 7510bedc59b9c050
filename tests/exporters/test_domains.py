"""Seeded random inputs within each input's domain, read from the ops it feeds, so that ONNX Runtime can run
a graph whose integer inputs index, bound a slice or scale a resize."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgepipe.exporters.onnx import input_domains, onnx_input_specs
from edgepipe.models.shared.errors import InputFileError
from edgepipe.models.shared.specs import random_feeds


def _save(tmp_path, nodes, inputs, outputs, initializers=()) -> "Path":  # noqa: F821
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    path = tmp_path / "m.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what ONNX Runtime 1.23 loads
    onnx.save(model, str(path))
    return path


def _runs(path) -> dict:
    """The seeded random feeds within their domains, checked by running ONNX Runtime on them."""
    feeds = random_feeds(onnx_input_specs(path), seed=0, domains=input_domains(path))
    ort.InferenceSession(str(path)).run(None, feeds)
    return feeds


def test_indices_stay_within_the_axis_they_index(tmp_path):
    data = helper.make_tensor_value_info("data", TensorProto.FLOAT, [5, 4, 3])
    rows = helper.make_tensor_value_info("rows", TensorProto.INT64, [40])
    cols = helper.make_tensor_value_info("cols", TensorProto.INT64, [5, 40, 3])
    nodes = [
        helper.make_node("Gather", ["data", "rows"], ["a"], axis=0),
        helper.make_node("GatherElements", ["data", "cols"], ["b"], axis=1),
    ]
    outputs = [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, [40, 4, 3]),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, [5, 40, 3]),
    ]
    path = _save(tmp_path, nodes, [data, rows, cols], outputs)
    domains = input_domains(path)
    assert (domains["rows"].low, domains["rows"].high) == (0, 5) and (domains["cols"].low, domains["cols"].high) == (
        0,
        4,
    )
    feeds = _runs(path)
    assert feeds["rows"].max() == 4 and feeds["cols"].max() == 3  # the whole axis is drawn from, not only 0 and 1
    assert "data" not in domains  # any float will do


def test_resize_scales_are_positive_and_slice_bounds_never_empty(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])
    scales = helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4])
    starts = helper.make_tensor_value_info("starts", TensorProto.INT64, [1])
    ends = helper.make_tensor_value_info("ends", TensorProto.INT64, [1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [3])
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="linear"),
        helper.make_node("Slice", ["r", "starts", "ends", "axes"], ["y"]),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, None])
    path = _save(tmp_path, nodes, [x, scales, starts, ends], [y], [axes])
    feeds = _runs(path)
    assert np.all(feeds["scales"] == 1.0)
    assert np.all(feeds["starts"] < feeds["ends"])


def test_an_input_that_sets_a_shape_asks_for_real_values(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])
    path = _save(tmp_path, [helper.make_node("Reshape", ["x", "shape"], ["y"])], [x, shape], [y])
    with pytest.raises(InputFileError, match=r"input 'shape' sets a shape \(Reshape .*--inputs FILE.npz"):
        input_domains(path)
