"""The ONNX step without copies of the weights: onnxsim on the file's bytes, shape inference on a graph
without them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgepipe.exporters.onnx.files import inferred_graph
from edgepipe.exporters.onnx.passes import prepare


def _model(weight_listed_as_input: bool = False) -> onnx.ModelProto:
    """x (1x3x8x8) -> Conv with a 64x3x3x3 weight (more values than shape inference keeps) -> Reshape by a
    constant shape -> Add of (c1 + c2), a constant subgraph onnxsim folds."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 3, 3, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 64, 36], np.int64), "shape")
    c1 = numpy_helper.from_array(np.full((36,), 0.5, np.float32), "c1")
    c2 = numpy_helper.from_array(np.full((36,), 0.25, np.float32), "c2")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Add", ["c1", "c2"], ["c"]),
        helper.make_node("Add", ["flat", "c"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    if weight_listed_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [64, 3, 3, 3]))
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 36])],
        [weight, shape, c1, c2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_shape_inference_without_the_weights_gives_what_it_gives_with_them():
    model = _model()
    full = onnx.shape_inference.infer_shapes(model).graph
    light = inferred_graph(model)
    assert [v.SerializeToString() for v in light.value_info] == [v.SerializeToString() for v in full.value_info]
    flat = next(v for v in light.value_info if v.name == "flat")
    assert [d.dim_value for d in flat.type.tensor_type.shape.dim] == [1, 64, 36]  # the Reshape read `shape`
    weight = next(t for t in light.initializer if t.name == "w")
    assert list(weight.dims) == [64, 3, 3, 3] and not weight.raw_data and not weight.float_data
    assert next(t for t in model.graph.initializer if t.name == "w").raw_data  # the model keeps its own


def test_prepare_simplifies_the_file_in_place_and_leaves_nothing_beside_it(tmp_path):
    onnx.save(_model(weight_listed_as_input=True), str(tmp_path / "model.onnx"))
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    before = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"x": x, "w": _weight()})[0]
    applied = {a.name: a.detail for a in prepare(tmp_path / "model.onnx", tmp_path / "convert.log")}
    assert applied["onnxsim"] == "4 nodes -> 3"  # c1 + c2 folded into one constant
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convert.log", "model.onnx"]
    prepared = onnx.load(str(tmp_path / "model.onnx"))
    assert [i.name for i in prepared.graph.input] == ["x"]  # an initializer is no input to feed
    assert all(t.data_location == TensorProto.DEFAULT for t in prepared.graph.initializer)  # one file
    after = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_when_onnxsim_fails_the_file_is_kept_as_it_was(tmp_path, monkeypatch):
    from onnxsim import onnxsim_cpp2py_export

    def fails(*args):
        raise RuntimeError("no simplification today")

    monkeypatch.setattr(onnxsim_cpp2py_export, "simplify", fails)
    onnx.save(_model(), str(tmp_path / "model.onnx"))
    applied = {a.name: a.detail for a in prepare(tmp_path / "model.onnx", tmp_path / "convert.log")}
    assert applied["onnxsim"] == "skipped: RuntimeError: no simplification today"
    assert len(onnx.load(str(tmp_path / "model.onnx")).graph.node) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convert.log", "model.onnx"]


def _weight() -> np.ndarray:
    return numpy_helper.to_array(next(t for t in _model().graph.initializer if t.name == "w"))
