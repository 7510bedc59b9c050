"""The TFLite variants, each with every converter setting it takes: the one table that says how a
variant is quantized (int8_mixed's debugger-built converter is configured from it too)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace

import numpy as np

from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.memory import heap_handed_back


@dataclass(frozen=True)
class Variant:
    """One TFLite variant: how validation judges it, its I/O, and its converter settings."""

    numerics: str  # "float32", "float16" or "quantized": which validation tolerance applies
    io_dtype: str = "float32"  # the dtype of every float input and output in the written file
    calibrated: bool = False  # activations are quantized, so representative samples are needed
    optimize: bool = False  # tf.lite.Optimize.DEFAULT: quantize what the other settings allow
    float16_weights: bool = False
    # The op set every op must come from: "builtins" lets an op stay float; "int8" and "int16x8" force
    # integer kernels everywhere and set the I/O dtype.
    kernels: str = "builtins"


VARIANTS: MappingProxyType[str, Variant] = MappingProxyType(
    {
        "fp32": Variant("float32"),
        "fp16": Variant("float16", optimize=True, float16_weights=True),  # float32 activations and I/O
        "dynamic": Variant("quantized", optimize=True),  # int8 weights; float32 activations and I/O
        "int8": Variant("quantized", "int8", calibrated=True, optimize=True, kernels="int8"),
        "int8_float_io": Variant("quantized", calibrated=True, optimize=True, kernels="int8"),  # int8 inside
        # int8 weights; int16 activations and I/O (TFLite's 16x8)
        "int16x8": Variant("quantized", "int16", calibrated=True, optimize=True, kernels="int16x8"),
        # int8 kernels and float32 I/O, with the layers int8 hurts most kept in float32 (quantize/mixed.py)
        "int8_mixed": Variant("quantized", calibrated=True, optimize=True),
        # int8 kernels and float32 I/O, with the op types whose int8 kernels are slower on the target kept
        # in float32 (quantize/fast.py)
        "int8_fast": Variant("quantized", calibrated=True, optimize=True),
    }
)


def configured(saved_model_dir, variant: str, feeds: tuple[dict[str, np.ndarray], ...] = ()):
    """A TFLiteConverter for the SavedModel with every setting of the variant; calibrated ones read feeds."""
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ExportError(f"no TFLite converter settings for variant {variant!r}; choose from {', '.join(VARIANTS)}")
    settings = VARIANTS[variant]
    converter = _saved_model_converter(saved_model_dir)
    if settings.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if settings.float16_weights:
        converter.target_spec.supported_types = [tf.float16]
    if settings.calibrated:
        converter.representative_dataset = lambda: (dict(feed) for feed in feeds)
    kernels = {
        "builtins": tf.lite.OpsSet.TFLITE_BUILTINS,
        "int8": tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        "int16x8": tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
    }[settings.kernels]
    if settings.kernels != "builtins":
        converter.inference_input_type = converter.inference_output_type = getattr(tf, settings.io_dtype)
    # Flex ops are let through here so that the export can name them; allow_flex decides after.
    converter.target_spec.supported_ops = [kernels, tf.lite.OpsSet.SELECT_TF_OPS]
    return converter


def _saved_model_converter(saved_model_dir):
    """TFLite's converter for a one-signature SavedModel, without the two eager loads of it that
    TensorFlow 2.19 makes.

    `from_saved_model` loads the whole SavedModel eagerly only to list its signatures, and `convert()`
    loads it once more only for the graph's debug info; the conversion itself reads the directory in
    C++. Each load restores every variable and traces every function: on convnext_tiny they took 1.2 s
    of a 5.7 s conversion and up to 160 MiB of its peak. The file is the same byte for byte: the
    conversion metadata still records a SavedModel as the source, as `from_saved_model` sets it.
    """
    import tensorflow as tf
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as metadata
    from tensorflow.lite.python import lite

    if not all(hasattr(lite, name) for name in ("_load", "TFLiteSavedModelConverterV2", "TFLiteConverterBase")):
        return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))  # another TensorFlow

    class Converter(lite.TFLiteSavedModelConverterV2):
        def convert(self):
            load, lite._load = lite._load, _no_debug_info
            try:
                with heap_handed_back():
                    return super().convert()
            finally:
                lite._load = load

    lite.TFLiteConverterBase._set_original_model_type(metadata.ModelType.TF_SAVED_MODEL)
    signature = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
    return Converter(str(saved_model_dir), {tf.saved_model.SERVING}, [signature])


def _no_debug_info(*_):
    """What `convert()` reads of its eager load: the debug info, which edgepipe's SavedModels do not carry."""
    return SimpleNamespace(graph_debug_info=None)
