"""TFLite files from onnx2tf's Keras model, written by edgepipe's own converter calls.

onnx2tf's own file writing hands the Keras model to `TFLiteConverter.from_keras_model`,
which serialises tf_keras metadata (every layer's config, weights included, deep-copied
and JSON-encoded) that never reaches the TFLite file: 98 % of a resnet18 conversion. A
SavedModel holding only the serving function skips that and keeps the SignatureDef.
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.exporters.quantize.variants import VARIANTS, configured
from edgepipe.exporters.tflite.boundary import Bounded
from edgepipe.exporters.tflite.inspect import sentinel_scaled_tensors
from edgepipe.models.shared.errors import ExportError, first_line

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


def variant_bytes(saved_model_dir: Path, variant: str, feeds: tuple, where: str, log_path: Path) -> bytes:
    """One variant's flatbuffer from the SavedModel, converted with the variant table's settings
    (calibrated variants on feeds); a converter failure is one ExportError line."""
    try:
        return configured(saved_model_dir, variant, feeds).convert()
    except Exception as exc:  # the converter raises several types; all mean the same to a user
        first = first_line(exc) or type(exc).__name__
        raise ExportError(f"{where} -> {variant}: TFLite conversion failed: {first} (details in {log_path})") from None


def check_scales(path: Path, variant: str, where: str) -> None:
    """Refuse a quantized file that calibration gave a sentinel's range: TFLite aborts the process on some."""
    wrong = sentinel_scaled_tensors(path) if VARIANTS[variant].calibrated else []
    if wrong:
        raise ExportError(
            f"{where} -> {variant}: calibration gave tensor(s) {', '.join(wrong[:3])}"
            f"{' ...' if len(wrong) > 3 else ''} a range no real activation has (a padding or masking value "
            "such as float32's lowest reached it), which rounds every value there to zero; keep padding and mask "
            "values within the activations' range in the model, or choose fp32, fp16 or dynamic"
        )
