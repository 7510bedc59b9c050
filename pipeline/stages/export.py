"""Stage export: a torch module -> model.pt2 (torch.export) -> model.onnx -> model_<variant>.tflite."""

from __future__ import annotations

import contextlib
import shutil

import torch

from edgepipe.exporters.convert import export_tflite_variants
from edgepipe.exporters.converter_process import ConverterProcess, worth_a_child
from edgepipe.exporters.onnx import load_onnx, onnx_input_specs, upgrade_old_opset
from edgepipe.exporters.quantize import MixedTarget, quantize_onnx
from edgepipe.models.shared.progress import step
from edgepipe.models.shared.specs import InputSpec
from edgepipe.pipeline.core.context import StageContext, onnx_source
from edgepipe.pipeline.core.feeding import TORCH_REFERENCE, held_out, remember, run_ahead, specs_of, validation_threads
from edgepipe.pipeline.core.modules import (
    exported_module_file,
    reference_batch,
    source_module,
    trained_module,
    user_calibration,
)
from edgepipe.pipeline.core.sources import model_source

CONVERT_LOG = "logs/convert.log"
UNCOMPRESSED = "uncompressed"  # the trained model's own files, beside the compressed ones


def run_export(ctx: StageContext) -> dict:
    """Write every artifact of the job's variants into staging; return their records."""
    log_path = ctx.staging / CONVERT_LOG
    # Started first, so that TensorFlow loads on the other core while PyTorch exports here.
    timeout = ctx.job.export.converter_timeout_s
    with ConverterProcess(log_path, timeout) if worth_a_child() else contextlib.nullcontext() as converter:
        return _export(ctx, log_path, converter)


def _export(ctx: StageContext, log_path, converter: ConverterProcess | None) -> dict:
    source = onnx_source(ctx.job)
    rewrites: list[str] = []
    module = program = None
    if source is None:
        module, examples, specs, calibration = source_module(ctx)
        step("export: PyTorch -> torch.export -> ONNX")
        program, rewrites = _export_torch(ctx, module, examples, specs, log_path, ctx.staging / "model.onnx")
        artifacts = [_record("torch", "fp32", "model.pt2", specs)]
    else:
        load_onnx(source)
        shutil.copyfile(source, ctx.staging / "model.onnx")
        note = upgrade_old_opset(ctx.staging / "model.onnx")  # so that validation's ONNX Runtime can run it
        rewrites = [f"onnx: {note}"] if note else []
        specs, artifacts = onnx_input_specs(ctx.staging / "model.onnx"), []
        calibration = user_calibration(ctx.job, specs)
    artifacts.append(_record("onnx", "fp32", "model.onnx", specs))
    # One onnx2tf run writes every variant: converting once per variant would repeat the whole
    # ONNX -> TensorFlow translation for each.
    step(f"export: ONNX -> TFLite with onnx2tf: {', '.join(ctx.job.export.variants)}")
    conversion = {
        "onnx_path": ctx.staging / "model.onnx",
        "out_dir": ctx.staging,
        "variants": ctx.job.export.variants,
        "log_path": log_path,
        "onnx_inputs": specs,
        "calibration": calibration,
        "allow_flex": ctx.job.export.allow_flex,
        "mixed": MixedTarget(ctx.job.validate_.quantized_min_sqnr_db, ctx.job.export.mixed_float_layers),
    }
    if converter:
        converter.submit(**conversion)
    if program is not None:  # written while the converter works
        torch.export.save(program, ctx.staging / "model.pt2")
    if converter:
        _run_ahead(ctx, artifacts, module, log_path)
        results = converter.result()
    else:
        results = export_tflite_variants(**conversion)
    for variant, result in results.items():
        artifacts.append(
            {
                **_record("tflite", variant, result.path.name, result.inputs),
                "outputs": [o.to_dict() for o in result.outputs],
                "custom_ops": list(result.custom_ops),
                "quantization": [q.to_dict() for q in result.quantization],
                "op_count": result.op_count,
                "op_histogram": dict(result.op_histogram),
                "size_split": result.size_split.to_dict(),
                "boundary": [fix.to_dict() for fix in result.boundary],
                **(
                    {
                        "sensitivity": [loss.to_dict() for loss in result.sensitivity],
                        "kept_float": list(result.kept_float),
                        "mixed_choice": result.mixed_choice.to_dict(),
                    }
                    if result.sensitivity
                    else {}
                ),
            }
        )
    for variant in ctx.job.export.onnx_variants:
        quantized = quantize_onnx(
            ctx.staging / "model.onnx", ctx.staging / f"model_{variant}.onnx", variant, log_path, calibration
        )
        artifacts.append(
            {**_record("onnx", variant, quantized.path.name, specs), "quantized_nodes": quantized.quantized_nodes}
        )
    uncompressed = _export_uncompressed(ctx, log_path, calibration) if source is None else []
    passes = [p.to_dict() for p in next(iter(results.values())).onnx_passes]
    return {
        "artifacts": artifacts,
        "rewrites": rewrites,
        "onnx_passes": passes,
        **({"uncompressed": uncompressed} if uncompressed else {}),
    }


def _run_ahead(ctx: StageContext, artifacts: list[dict], module, log_path) -> None:
    """While the converter process works, run what validation compares with the TFLite files (the PyTorch
    and ONNX files, the module exported) on its samples, on one core fewer than validation would use (the
    converter has the other); the validate stage recalls them."""
    if ctx.job.validate_.eval_data:  # read against the ONNX file in the run directory, not yet there
        return
    view = StageContext(ctx.job, ctx.store, ctx.staging, {"export": {"artifacts": artifacts}})
    threads, before = max(1, validation_threads() - 1), torch.get_num_threads()
    try:
        samples, _ = held_out(view)
        for a in artifacts:
            run_ahead(ctx.staging / a["path"], a, samples, threads)
        from edgepipe.models.training import predict_outputs

        torch.set_num_threads(threads)
        specs = tuple(specs_of(artifacts[0]))
        outputs = predict_outputs(module, samples, [s.name for s in specs], reference_batch(ctx, specs))
        reference = {f"output_{i}": o for i, o in enumerate(outputs)}
        remember(exported_module_file(ctx), TORCH_REFERENCE, samples, reference)
    except Exception as exc:  # validation runs them itself, and reports what is wrong
        with open(log_path, "a") as log:
            log.write(f"edgepipe: validation outputs not run ahead: {type(exc).__name__}: {exc}\n")
    finally:
        torch.set_num_threads(before)


def _export_torch(ctx: StageContext, module, examples, specs: tuple[InputSpec, ...], log_path, onnx_path) -> tuple:
    """(torch.export program, rewrites): the module after export-friendly rewrites, exported, and its ONNX file."""
    from edgepipe.exporters.torch import export_friendly, export_onnx

    friendly, rewrites = export_friendly(module)
    program = torch.export.export(friendly, examples)
    export_onnx(program, examples, [s.name for s in specs], onnx_path, log_path, ctx.job.export.opset)
    return program, rewrites


def _export_uncompressed(ctx: StageContext, log_path, calibration) -> list[dict]:
    """The trained model before compression as fp32 (and int8) TFLite files, for the compression table's
    sizes and interleaved latency; none when the job compressed nothing."""
    if not ctx.results.get("compress", {}).get("steps"):
        return []
    step("export: the uncompressed model too, for the compression table")
    source = model_source(ctx.job)
    folder = ctx.staging / UNCOMPRESSED
    folder.mkdir()
    examples = source.examples()
    _export_torch(ctx, trained_module(ctx), examples, source.inputs, log_path, folder / "model.onnx")
    conversion = {
        "onnx_path": folder / "model.onnx",
        "out_dir": folder,
        "variants": [v for v in ("fp32", "int8") if v in ctx.job.export.variants] or ["fp32"],
        "log_path": log_path,
        "onnx_inputs": source.inputs,
        "calibration": calibration,
        "allow_flex": ctx.job.export.allow_flex,
    }
    if worth_a_child():
        with ConverterProcess(log_path, ctx.job.export.converter_timeout_s) as converter:
            converter.submit(**conversion)
            results = converter.result()
    else:
        results = export_tflite_variants(**conversion)
    (folder / "model.onnx").unlink()
    return [
        {
            **_record("tflite", variant, str(result.path.relative_to(ctx.staging)), result.inputs),
            "quantization": [q.to_dict() for q in result.quantization],
            "size_bytes": result.path.stat().st_size,
        }
        for variant, result in results.items()
    ]


def _record(fmt: str, variant: str, path: str, inputs: tuple[InputSpec, ...]) -> dict:
    return {"format": fmt, "variant": variant, "path": path, "inputs": [s.to_dict() for s in inputs]}
