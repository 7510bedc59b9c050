"""The ONNX step: load and read a file's inputs and outputs (and the values each input may take), upgrade
its opset, simplify, and the ordered, named graph passes that make it translatable (`prepare`)."""

from edgepipe.exporters.onnx.domains import Domain, input_domains
from edgepipe.exporters.onnx.files import (
    load_onnx,
    onnx_input_specs,
    onnx_output_specs,
    onnxruntime_copy,
    upgrade_old_opset,
)
from edgepipe.exporters.onnx.passes import PASSES, AppliedPass, prepare

__all__ = [
    "PASSES",
    "AppliedPass",
    "Domain",
    "input_domains",
    "load_onnx",
    "onnx_input_specs",
    "onnx_output_specs",
    "onnxruntime_copy",
    "prepare",
    "upgrade_old_opset",
]
