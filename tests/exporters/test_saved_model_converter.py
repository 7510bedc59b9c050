"""TFLite's converter on edgepipe's SavedModels: the same file as from_saved_model's, without loading the
SavedModel eagerly (variables restored, functions traced) before the C++ conversion reads it."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.exporters.quantize import variants


def _saved_model(path):
    import tensorflow as tf

    class Dense(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((16, 8)).astype(np.float32))
            self.b = tf.Variable(rng.standard_normal(8).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec((1, 16), tf.float32, "x")])
        def serve(self, x):
            return {"y": tf.nn.relu(x @ self.w + self.b)}

    module = Dense()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.mark.parametrize("variant", ["fp32", "dynamic"])
def test_same_bytes_as_from_saved_model_with_no_eager_load(tmp_path, monkeypatch, variant):
    import tensorflow as tf
    from tensorflow.lite.python import lite

    saved = _saved_model(tmp_path / "saved")
    loads = []
    eager_load = lite._load
    monkeypatch.setattr(lite, "_load", lambda *args: loads.append(args) or eager_load(*args))
    ours = variants.configured(saved, variant).convert()
    assert loads == []
    monkeypatch.setattr(variants, "_saved_model_converter", lambda d: tf.lite.TFLiteConverter.from_saved_model(str(d)))
    assert variants.configured(saved, variant).convert() == ours
    assert loads, "from_saved_model no longer loads eagerly: the test no longer sees what it checks"
