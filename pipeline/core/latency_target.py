"""prune_target = {latency = F}: the channel amount whose fp32 TFLite file runs in F of the unpruned file's
host time, found by bisection on converted candidates, each timed interleaved with the unpruned file."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from edgepipe.models.channel_pruning import prune_channels
from edgepipe.models.shared.progress import step
from edgepipe.models.shared.specs import InputSpec

BISECTIONS = 5


def amount_for_latency(
    module: torch.nn.Module,
    examples: tuple[torch.Tensor, ...],
    specs: tuple[InputSpec, ...],
    fraction: float,
    skip: tuple[str, ...],
    opset: int,
    log_path: Path,
) -> tuple[float, list[dict]]:
    """(amount, trials): each trial's amount and measured p50 ratio to the unpruned file."""
    from edgepipe.profilers.isolation import in_child
    from edgepipe.profilers.paired import paired_ratio

    with tempfile.TemporaryDirectory(prefix="edgepipe-latency-") as tmp:
        work = Path(tmp)
        reference = _tflite(module, examples, specs, work / "unpruned", opset, log_path)
        low, high, trials = 0.0, 0.95, []
        for _ in range(BISECTIONS):
            middle = (low + high) / 2
            candidate = copy.deepcopy(module).eval()
            prune_channels(candidate, examples, middle, skip)
            path = _tflite(candidate, examples, specs, work / f"amount_{middle:.4f}", opset, log_path)
            ratio = in_child(paired_ratio, path, reference, 1, log_path=log_path).p50_ratio
            trials.append({"amount": middle, "p50_ratio": ratio})
            step(f"compress: {middle:.0%} of the channels runs in {ratio:.2f}x the unpruned time")
            low, high = (middle, high) if ratio > fraction else (low, middle)
    return high, trials


def _tflite(module, examples, specs, folder: Path, opset: int, log_path: Path) -> tuple:
    """The module's fp32 TFLite file, as a (runtime, path, feeds) side for paired timing."""
    from edgepipe.exporters.convert import export_tflite_variants
    from edgepipe.exporters.torch import export_friendly, export_onnx
    from edgepipe.pipeline.core.feeding import feeds_for

    folder.mkdir(parents=True)
    friendly, _ = export_friendly(module)
    program = torch.export.export(friendly, examples)
    onnx_path = folder / "model.onnx"
    export_onnx(program, examples, [s.name for s in specs], onnx_path, log_path, opset)
    result = export_tflite_variants(onnx_path, folder, ["fp32"], log_path, specs)["fp32"]
    record = {"inputs": [s.to_dict() for s in result.inputs]}
    return ("tflite", result.path, feeds_for(record, {s.name: x.numpy() for s, x in zip(specs, examples)}))
