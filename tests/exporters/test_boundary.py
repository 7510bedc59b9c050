"""Boundary shapes: the written TFLite file takes and gives the ONNX model's shapes where onnx2tf changed them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgepipe.exporters.convert import export_tflite
from edgepipe.exporters.onnx.files import onnx_input_specs, onnx_output_specs
from edgepipe.exporters.tflite.boundary import BoundaryFix, fit_boundary
from edgepipe.exporters.tflite.evidence import reference_outputs
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.specs import InputSpec
from edgepipe.profilers.runtimes import open_tflite


def _save(tmp: Path, nodes: list, inputs: list, outputs: list, name: str = "model.onnx") -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # as torch writes; onnx2tf 1.29 translates the 2-D Concat below right under onnx's IR 12
    onnx.checker.check_model(model)
    path = tmp / name
    onnx.save(model, str(path))
    return path


def _concat_axis_minus_2(tmp: Path) -> Path:
    """onnx2tf 1.29 reads 2-D tensors transposed here: its model gives (2, 4) for ONNX's (4, 2)."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in ("a", "b")]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])
    return _save(tmp, [helper.make_node("Concat", ["a", "b"], ["y"], axis=-2)], inputs, [out])


def _clip_scalar_max(tmp: Path) -> Path:
    """onnx2tf 1.29 makes the scalar input `hi` a (1,) tensor."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    hi = helper.make_tensor_value_info("hi", TensorProto.FLOAT, [])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    return _save(tmp, [helper.make_node("Clip", ["x", "", "hi"], ["y"])], [x, hi], [out])


def _export(onnx_path: Path, tmp: Path):
    return export_tflite(onnx_path, tmp / "model_fp32.tflite", "fp32", tmp / "convert.log")


def _tflite_vs_ort(onnx_path: Path, tflite_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Each output of the file and of ONNX Runtime on the same ONNX-shaped feeds."""
    got = open_tflite(tflite_path, 1).run(feeds)
    names = [o.name for o in ort.InferenceSession(str(onnx_path)).get_outputs()]
    reference = dict(zip(names, ort.InferenceSession(str(onnx_path)).run(None, feeds)))
    return {name: (np.asarray(got[name]), reference[name]) for name in names}


def test_transposed_2d_concat_is_restored(tmp_path, monkeypatch):
    # onnx2tf's strict translation transposes these 2-D tensors (its fast one, edgepipe's first try, does not)

    from edgepipe.exporters.tflite import translate

    monkeypatch.setattr(translate, "_not_reproduced", lambda *args: "is refused by this test")
    onnx_path = _concat_axis_minus_2(tmp_path)
    result = _export(onnx_path, tmp_path)
    assert [s.shape for s in result.inputs] == [(2, 2), (2, 2)]
    assert [s.shape for s in result.outputs] == [(4, 2)]
    assert {(f.role, f.name, f.op, f.perm) for f in result.boundary} == {
        ("input", "a", "transpose", (1, 0)),
        ("input", "b", "transpose", (1, 0)),
        ("output", "y", "transpose", (1, 0)),
    }
    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal((2, 2)).astype(np.float32) for n in ("a", "b")}
    for got, want in _tflite_vs_ort(onnx_path, result.path, feeds).values():
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_scalar_input_is_taken_as_a_scalar(tmp_path):
    onnx_path = _clip_scalar_max(tmp_path)
    result = _export(onnx_path, tmp_path)
    assert {s.name: s.shape for s in result.inputs} == {"x": (2, 3), "hi": ()}
    assert [(f.name, f.op, f.onnx_shape, f.model_shape) for f in result.boundary] == [("hi", "reshape", (), (-1,))]
    feeds = {"x": np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3), "hi": np.array(0.5, np.float32)}
    for got, want in _tflite_vs_ort(onnx_path, result.path, feeds).values():
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_fitting_shapes_need_no_fix(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    result = _export(_save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [x], [y]), tmp_path)
    assert result.boundary == ()
    assert [s.layout for s in result.inputs] == ["NHWC"]


def _keras(transform, shape: tuple[int, ...]):
    """A one-input Keras model applying transform, standing in for onnx2tf's."""
    import tensorflow as tf
    import tf_keras

    x = tf_keras.Input(shape=shape[1:], batch_size=shape[0], name="x")
    return tf_keras.Model(x, tf_keras.layers.Lambda(lambda t: transform(tf, t))(x))


def _identity_onnx(tmp: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    return _save(tmp, [helper.make_node("Identity", ["x"], ["y"])], [x], [y])


def _fitted(transform, onnx_path: Path, log: Path):
    """fit_boundary for a Keras stand-in of the ONNX file, with ONNX Runtime's evidence."""
    specs = onnx_input_specs(onnx_path)
    evidence = reference_outputs(onnx_path, specs, log)
    return fit_boundary(_keras(transform, (2, 3)), specs, onnx_output_specs(onnx_path), set(), evidence, log)


def test_a_transpose_is_chosen_only_by_evidence(tmp_path):
    onnx_path = _identity_onnx(tmp_path)
    right = _fitted(lambda tf, t: tf.transpose(t), onnx_path, tmp_path / "log")
    assert right.fixes == (BoundaryFix("y", "output", (2, 3), (3, 2), "transpose", (1, 0)),)
    # The same shape with other numbers: no reading reproduces ONNX Runtime, so nothing is changed
    # and the signature check keeps refusing the file.
    wrong = _fitted(lambda tf, t: 2 * tf.transpose(t), onnx_path, tmp_path / "log")
    assert wrong.fixes == ()
    assert "no reshape or transpose reproduced" in (tmp_path / "log").read_text()


def test_unrestorable_output_keeps_the_clear_error(tmp_path):
    from edgepipe.exporters.tflite.signature import signature
    from edgepipe.exporters.tflite.write import write_saved_model

    onnx_path = _identity_onnx(tmp_path)
    specs = onnx_input_specs(onnx_path)
    bounded = _fitted(lambda tf, t: 2 * tf.transpose(t), onnx_path, tmp_path / "log")
    write_saved_model(bounded, ["y"], tmp_path / "saved")
    import tensorflow as tf

    (tmp_path / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved")).convert())
    with pytest.raises(ExportError, match=r"output 'y' has shape \(3, 2\), neither the ONNX shape \(2, 3\)"):
        signature(tmp_path / "m.tflite", specs, (InputSpec("y", (2, 3)),), set())


def test_an_ambiguous_output_kept_without_evidence_is_said(tmp_path, caplog):
    # (1, 4, 4) reads the same as NWC and NCW; with ONNX Runtime unable to run the graph the
    # recorded layout is onnx2tf's rule, and the log says it was not checked.
    import edgepipe.exporters.tflite.signature as signature_module
    from edgepipe.exporters.tflite.evidence import Evidence

    spec = InputSpec("y", (1, 4, 4), "float32", "NWC")
    no_evidence = Evidence({}, None, "RuntimeError: refused by this test")
    kept = signature_module.settle_ambiguous_outputs(tmp_path / "m.tflite", (), (), (spec,), no_evidence)
    assert kept == (spec,)
    assert "output(s) y, whose shape" in caplog.text and "without a check" in caplog.text
