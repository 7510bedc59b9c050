"""The ONNX step: load and read a file's inputs and outputs, upgrade its opset, simplify, and the
ordered, named graph passes that make it translatable (`prepare`)."""

from edgepipe.exporters.onnx.files import load_onnx, onnx_input_specs, onnx_output_specs, upgrade_old_opset
from edgepipe.exporters.onnx.passes import PASSES, AppliedPass, prepare

__all__ = [
    "PASSES",
    "AppliedPass",
    "load_onnx",
    "onnx_input_specs",
    "onnx_output_specs",
    "prepare",
    "upgrade_old_opset",
]
