"""The PyTorch step: export-friendly module rewrites, and torch.export program -> ONNX."""

from edgepipe.exporters.torch.plain_sdpa import attention_failure, attention_traced_plain
from edgepipe.exporters.torch.rewrites import export_friendly
from edgepipe.exporters.torch.to_onnx import OnnxExport, export_onnx

__all__ = ["OnnxExport", "attention_failure", "attention_traced_plain", "export_friendly", "export_onnx"]
