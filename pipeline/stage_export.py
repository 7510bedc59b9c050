"""Stage export: model.pt -> model.pt2 (torch.export) -> model.onnx -> model_<variant>.tflite."""
from __future__ import annotations

import shutil

import numpy as np

from exporters.onnx_inputs import load_onnx, onnx_input_specs
from exporters.onnx_to_tflite import export_tflite
from models.specs import InputSpec
from pipeline.context import StageContext, onnx_source

CONVERT_LOG = "logs/convert.log"


def run_export(ctx: StageContext) -> dict:
    """Write every artifact of the job's variants into staging; return their records."""
    log_path = ctx.staging / CONVERT_LOG
    source = onnx_source(ctx.job)
    if source is None:
        onnx_specs, calibration, artifacts = _export_zoo_model(ctx, log_path)
    else:
        load_onnx(source)
        shutil.copyfile(source, ctx.staging / "model.onnx")
        onnx_specs, calibration, artifacts = onnx_input_specs(ctx.staging / "model.onnx"), None, []
    artifacts.append(_record("onnx", "fp32", "model.onnx", onnx_specs))
    for variant in ctx.job.export.variants:
        name = f"model_{variant}.tflite"
        result = export_tflite(ctx.staging / "model.onnx", ctx.staging / name, variant, log_path,
                               onnx_specs, calibration, ctx.job.export.allow_flex)
        artifacts.append({**_record("tflite", variant, name, result.inputs), "custom_ops": list(result.custom_ops)})
    return {"artifacts": artifacts}


def _export_zoo_model(ctx: StageContext, log_path) -> tuple:
    import torch

    from exporters.torch_to_onnx import export_onnx
    from models.zoo import get_model
    from pipeline.stage_train import load_trained

    spec = get_model(ctx.job.job.model)
    module = load_trained(ctx)
    examples = tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in spec.inputs)
    program = torch.export.export(module, examples)
    torch.export.save(program, ctx.staging / "model.pt2")
    export_onnx(program, examples, [s.name for s in spec.inputs], ctx.staging / "model.onnx", log_path,
                ctx.job.export.opset)
    data = spec.dataset(ctx.job.job.seed)
    count = ctx.job.export.calibration_samples
    calibration = {spec.inputs[0].name: np.ascontiguousarray(data.x_train[:count])}
    artifacts = [_record("torch", "fp32", "model.pt2", spec.inputs)]
    return spec.inputs, calibration, artifacts


def _record(fmt: str, variant: str, path: str, inputs: tuple[InputSpec, ...]) -> dict:
    return {"format": fmt, "variant": variant, "path": path, "inputs": [s.to_dict() for s in inputs]}
