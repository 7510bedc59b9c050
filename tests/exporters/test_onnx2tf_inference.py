"""onnx2tf's test inferences run incrementally: the same values as whole runs, each layer computed once."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

import edgepipe.exporters.tflite.onnx2tf_inference as inference


def _chain(layers: int):
    """A functional Keras graph: x -> (x * 1.01 + i) repeated, every step's tensor, and a counter of layer calls."""
    import tensorflow as tf
    import tf_keras

    calls = {"n": 0}

    def step(i):
        def apply(t):
            calls["n"] += 1
            return t * 1.01 + i

        return tf_keras.layers.Lambda(apply)

    x = tf_keras.Input(shape=(4,), batch_size=1, name="x")
    tensors, t = [], x
    for i in range(layers):
        t = step(i)(t)
        tensors.append(t)
    tensors.append(tf.concat([tensors[2], tensors[-1]], axis=1))  # a raw op on two tensors: a TFOpLambda
    return x, tensors, calls


def test_growing_prefixes_give_whole_run_values_and_compute_each_layer_once():
    import tf_keras

    x, tensors, calls = _chain(12)
    feed = {"x": np.arange(4, dtype=np.float32)[None]}
    values = inference._Values()
    for end in (3, 7, 12):
        model = tf_keras.Model(inputs=[x], outputs=[tensors[end - 1], tensors[0]])
        calls["n"] = 0
        whole = [np.asarray(v) for v in model(inputs=feed, training=False)]
        assert calls["n"] == end  # a whole run computes the prefix again
        calls["n"] = 0
        got = [np.asarray(v) for v in inference._Incremental(model, values)(inputs=feed, training=False)]
        assert all(np.array_equal(a, b) for a, b in zip(got, whole))
        assert calls["n"] == end - {3: 0, 7: 3, 12: 7}[end]  # only the layers no earlier run computed
    passed_through = inference._Incremental(tf_keras.Model(inputs=[x], outputs=x), values)(inputs=feed)
    assert np.array_equal(passed_through.numpy(), feed["x"])  # a tensor, as a Keras call returns it
    joined = tf_keras.Model(inputs=[x], outputs=tensors[-1])
    got = inference._Incremental(joined, values)(inputs=feed, training=False)
    assert np.array_equal(np.asarray(got), np.asarray(joined(inputs=feed, training=False)))


def test_another_input_and_a_spent_budget_still_give_whole_run_values(monkeypatch):
    import tf_keras

    x, tensors, calls = _chain(6)
    model = tf_keras.Model(inputs=[x], outputs=[tensors[5]])
    values = inference._Values()
    for seed in (0, 1, 0):
        feed = {"x": np.random.default_rng(seed).standard_normal((1, 4)).astype(np.float32)}
        got = inference._Incremental(model, values)(inputs=feed, training=False)
        assert np.array_equal(np.asarray(got), np.asarray(model(inputs=feed, training=False)))
    monkeypatch.setattr(inference, "BUDGET_BYTES", 20)  # room for one 16-byte value: the rest is computed again
    values.trim()
    assert len(values.kept) == 1  # the last one: tensors[5]
    earlier = tf_keras.Model(inputs=[x], outputs=[tensors[3]])
    whole, whole_earlier = (np.asarray(m(inputs=feed, training=False)) for m in (model, earlier))
    calls["n"] = 0
    got = inference._Incremental(model, values)(inputs=feed, training=False)
    assert np.array_equal(np.asarray(got), whole)
    assert calls["n"] == 0  # what the output needs is kept: none of the dropped layers is computed again
    got = inference._Incremental(earlier, values)(inputs=feed, training=False)
    assert np.array_equal(np.asarray(got), whole_earlier)
    assert calls["n"] == 4  # tensors[0] to [3], dropped and needed: computed again, and nothing past them


def test_onnx2tf_translates_to_the_same_model_with_incremental_test_inferences(tmp_path, monkeypatch):
    """The attention's MatMuls choose their layouts by test inference (a wrong test value changes the
    translation): the translation is the same either way."""
    import torch

    import edgepipe.exporters.tflite.translate as translate
    from edgepipe.exporters.onnx.passes import prepare
    from edgepipe.exporters.torch.to_onnx import export_onnx
    from tests.profile_models import square_attention

    module, example = square_attention()
    program = torch.export.export(module, (example,))
    onnx_file = export_onnx(program, (example,), ["x"], tmp_path / "m.onnx", tmp_path / "log").path
    prepare(onnx_file, tmp_path / "log")
    feed = np.random.default_rng(0).standard_normal((1, 4, 4, 16)).astype(np.float32)

    def translated(folder: str) -> np.ndarray:
        private = tmp_path / folder / "model.onnx"
        private.parent.mkdir()
        private.write_bytes(Path(onnx_file).read_bytes())
        model = translate._run_onnx2tf(private, onnx_file, [], [], tmp_path / "log", strict=False)
        return np.asarray(model(feed))

    incremental = translated("incremental")
    monkeypatch.setattr(inference, "incremental_test_inference", contextlib.nullcontext)
    assert np.array_equal(incremental, translated("whole"))


@pytest.fixture(autouse=True)
def _no_leftover_patch():
    """The patch is undone after a conversion: onnx2tf's own function is back everywhere."""
    yield
    import onnx2tf.ops.MatMul as matmul
    import onnx2tf.utils.common_functions as common

    assert matmul.dummy_tf_inference is common.dummy_tf_inference
    assert common.dummy_tf_inference.__module__ == "onnx2tf.utils.common_functions"
