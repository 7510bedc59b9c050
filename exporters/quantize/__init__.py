"""The quantization step: the TFLite variant table with its converter settings, calibration batches,
int8_mixed (per-layer int8 loss, layers kept float), int8_fast (op types whose int8 kernels are slower
on the target kept float), and ONNX Runtime's quantized variants."""

from edgepipe.exporters.quantize.calibration import CalibratedInput, Requirements, calibration_batches
from edgepipe.exporters.quantize.fast import FastTarget, Timer
from edgepipe.exporters.quantize.mixed import MixedTarget
from edgepipe.exporters.quantize.ort import ORT_VARIANTS, quantize_onnx
from edgepipe.exporters.quantize.variants import VARIANTS, Variant, configured

__all__ = [
    "ORT_VARIANTS",
    "VARIANTS",
    "CalibratedInput",
    "FastTarget",
    "MixedTarget",
    "Requirements",
    "Timer",
    "Variant",
    "calibration_batches",
    "configured",
    "quantize_onnx",
]
