"""PyTorch -> ONNX with named inputs and outputs, single file, fixed opset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ExportError, first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxExport:
    """The written ONNX file and the names it carries."""

    path: Path
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def export_onnx(
    program: torch.export.ExportedProgram,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: list[str],
    path: Path,
    log_path: Path,
    opset: int = 18,
) -> OnnxExport:
    """Export a torch.export program through the dynamo exporter and check the result loads."""
    output_names = [f"output_{i}" for i in range(len(program.graph_signature.user_outputs))]
    try:
        with output_to_log(log_path):
            torch.onnx.export(
                program,
                example_inputs,
                str(path),
                input_names=input_names,
                output_names=output_names,
                opset_version=opset,
                dynamo=True,
                external_data=False,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # torch.export raises many types; all mean the same to a user
        raise ExportError(
            f"torch -> ONNX export failed: {type(exc).__name__}: {first_line(exc)} (details in {log_path})"
        ) from exc
    return OnnxExport(path, opset, tuple(input_names), tuple(output_names))
