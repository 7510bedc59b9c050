"""TFLite files from onnx2tf's Keras model, written by edgepipe's own converter calls.

onnx2tf's own file writing hands the Keras model to `TFLiteConverter.from_keras_model`,
which serialises tf_keras metadata (every layer's config, weights included, deep-copied
and JSON-encoded) that never reaches the TFLite file: 98 % of a resnet18 conversion. A
SavedModel holding only the serving function skips that and keeps the SignatureDef.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.exporters.boundary import Bounded
from edgepipe.models.shared.errors import ExportError

SIGNATURE_KEY = "serving_default"


def write_saved_model(model: Bounded, output_names: list[str], out_dir: Path) -> None:
    """Save the Keras model's forward pass as a SavedModel whose signature names inputs and outputs as ONNX does.

    Where onnx2tf changed an input's or output's shape, the serving function reshapes or transposes
    at the boundary (model.fixes), so the file takes and gives the ONNX shapes.
    """
    import tensorflow as tf

    if len(model.keras.outputs) != len(output_names):
        raise ExportError(
            f"onnx2tf's model has {len(model.keras.outputs)} output(s), the ONNX graph {len(output_names)}"
        )
    specs = [tf.TensorSpec(shape, t.dtype, t.name) for t, shape in zip(model.keras.inputs, model.input_shapes())]

    def serve(*inputs):
        return {name: tf.identity(out) for name, out in zip(output_names, model(list(inputs)))}

    # A bare tf.Module: saving the Keras model itself is what serialises its metadata. It must
    # track every variable the function reads, Keras weights and those onnx2tf ops make alike.
    holder = tf.Module()
    holder.serve = tf.function(serve, input_signature=specs)
    concrete = holder.serve.get_concrete_function()
    holder.captured = list(concrete.variables)
    tf.saved_model.save(holder, str(out_dir), signatures={SIGNATURE_KEY: concrete})


def convert_variant(saved_model_dir: Path, variant: str, feeds: tuple[dict[str, np.ndarray], ...]) -> bytes:
    """One variant's flatbuffer from the SavedModel; calibrated variants are calibrated on feeds."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    # Flex ops are let through here so that the export can name them; allow_flex decides after.
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # without representative data: weights only
    elif variant in ("int8", "int8_float_io", "int16x8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (dict(feed) for feed in feeds)
        builtins = (
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if variant == "int16x8"
            else tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        )
        io_type = {"int8": tf.int8, "int8_float_io": tf.float32, "int16x8": tf.int16}[variant]
        converter.inference_input_type = converter.inference_output_type = io_type
    elif variant != "fp32":
        raise ExportError(f"no TFLite converter settings for variant {variant!r}")
    converter.target_spec.supported_ops = [builtins, tf.lite.OpsSet.SELECT_TF_OPS]
    return converter.convert()


def calibration_feeds(where: str, samples: dict[str, np.ndarray], details: dict[str, dict]) -> tuple[dict, ...]:
    """Samples cut along the batch axis into the batch the model takes (1 unless fixed otherwise).

    details are the float model's signature inputs by name (shape, dtype); samples are in its layout.
    """
    if set(samples) != set(details):
        raise ExportError(
            f"{where}: samples are for input(s) {', '.join(sorted(samples)) or '(none)'}, "
            f"the model takes {', '.join(sorted(details))}"
        )
    counts = {len(np.asarray(v)) for v in samples.values()}
    shapes = {name: tuple(int(x) for x in d["shape"]) for name, d in details.items()}
    batch = next(iter(shapes.values()))[0] if shapes and next(iter(shapes.values()))[0] > 0 else 1
    wrong = [
        f"{name} {np.asarray(v).shape[1:]} (expected {shapes[name][1:]})"
        for name, v in samples.items()
        if np.asarray(v).shape[1:] != shapes[name][1:]
    ]
    if wrong or len(counts) != 1 or min(counts) < batch:
        raise ExportError(
            f"{where}: samples must be arrays of whole batches of {batch}, batch axis first, "
            f"in the model's layout (NHWC for images), the same count for every input; "
            f"got {', '.join(wrong) or 'counts ' + str(sorted(counts))}"
        )
    count = counts.pop() // batch * batch
    return tuple(
        {
            name: np.ascontiguousarray(np.asarray(v)[i : i + batch], dtype=details[name]["dtype"])
            for name, v in samples.items()
        }
        for i in range(0, count, batch)
    )
