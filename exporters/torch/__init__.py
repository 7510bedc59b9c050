"""The PyTorch step: export-friendly module rewrites, and torch.export program -> ONNX."""

from edgepipe.exporters.torch.rewrites import export_friendly
from edgepipe.exporters.torch.to_onnx import OnnxExport, export_onnx

__all__ = ["OnnxExport", "export_friendly", "export_onnx"]
