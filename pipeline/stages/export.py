"""Stage export: a torch module -> model.pt2 (torch.export) -> model.onnx -> model_<variant>.tflite."""

from __future__ import annotations

import contextlib
import math
import shutil

import numpy as np
import torch

from edgepipe.exporters.convert import export_tflite_variants
from edgepipe.exporters.converter_process import ConverterProcess, in_a_child
from edgepipe.exporters.onnx import load_onnx, onnx_input_specs, onnx_output_specs, upgrade_old_opset
from edgepipe.exporters.quantize import FastTarget, MixedTarget, quantize_onnx
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.memory import release_freed_heap
from edgepipe.models.shared.progress import step
from edgepipe.models.shared.specs import InputSpec
from edgepipe.pipeline.core.context import StageContext, onnx_source
from edgepipe.pipeline.core.feeding import TORCH_REFERENCE, held_out, remember, run_ahead, specs_of, validation_threads
from edgepipe.pipeline.core.int8_target import int8_timer
from edgepipe.pipeline.core.modules import (
    exported_module_file,
    reference_batch,
    source_module,
    trained_module,
    user_calibration,
)
from edgepipe.pipeline.core.sources import model_source
from edgepipe.pipeline.core.user_models import forget_built_models

CONVERT_LOG = "logs/convert.log"
UNCOMPRESSED = "uncompressed"  # the trained model's own files, beside the compressed ones


def run_export(ctx: StageContext) -> dict:
    """Write every artifact of the job's variants into staging; return their records."""
    log_path = ctx.staging / CONVERT_LOG
    # Started first, so that TensorFlow loads on the other core while PyTorch exports here.
    timeout, child = ctx.job.export.converter_timeout_s, in_a_child(ctx.job.export.converter)
    with ConverterProcess(log_path, timeout) if child else contextlib.nullcontext() as converter:
        return {**_export(ctx, log_path, converter), "converter": _converter_record(converter)}


def _converter_record(converter: ConverterProcess | None) -> dict:
    """Which process converted; a child's own peak RSS (VmHWM, MiB), which the stage's memory record,
    sampled from this process, can miss."""
    if converter is None:
        return {"process": "in_process"}
    peak = converter.peak_rss_mib
    return {"process": "child", "hwm_mib": None if peak is None else round(peak, 1)}


def _export(ctx: StageContext, log_path, converter: ConverterProcess | None) -> dict:
    source = onnx_source(ctx.job)
    module = program = None
    if source is None:
        module, examples, specs, calibration = source_module(ctx)
        if converter:
            # Beside a converter child, the factory's module kept for the next caller goes too: validation's
            # reference runs ahead from this copy. In one process validation asks for the module again.
            forget_built_models()
        step("export: PyTorch -> torch.export -> ONNX")
        program, rewrites = _export_torch(ctx, module, examples, specs, log_path, ctx.staging / "model.onnx")
        artifacts = [_record("torch", "fp32", "model.pt2", specs)]
    else:
        (specs, calibration, rewrites), artifacts = _from_onnx_file(ctx, source), []
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
        "fast": FastTarget(_int8_timer(ctx), ctx.job.validate_.quantized_min_sqnr_db),
    }
    if converter:
        converter.submit(**conversion)
    if program is not None:  # written while the converter works
        step("export: saving model.pt2")
        torch.export.save(program, ctx.staging / "model.pt2")
    samples = _ahead_samples(ctx, artifacts, log_path) if converter else None
    if samples is not None and module is not None:
        with _running_ahead(log_path) as threads:
            _module_ahead(ctx, artifacts, module, samples, threads)
    # Nothing below needs the module or its program: their memory goes back before the conversion's
    # peak, in this process or beside the child's.
    del module, program
    release_freed_heap()
    if samples is not None:
        _files_ahead(ctx, artifacts, samples, log_path)
    results = converter.result() if converter else export_tflite_variants(**conversion)
    artifacts += [_tflite_record(result) for result in results.values()]
    artifacts += [_onnx_variant(ctx, variant, specs, calibration, log_path) for variant in ctx.job.export.onnx_variants]
    uncompressed = _export_uncompressed(ctx, log_path, calibration) if source is None else []
    passes = [p.to_dict() for p in next(iter(results.values())).onnx_passes]
    return {
        "artifacts": artifacts,
        "rewrites": rewrites,
        "onnx_passes": passes,
        **({"uncompressed": uncompressed} if uncompressed else {}),
    }


def _from_onnx_file(ctx: StageContext, source) -> tuple:
    """(input specs, calibration samples, rewrites) of the user's ONNX file, copied to model.onnx."""
    load_onnx(source)
    shutil.copyfile(source, ctx.staging / "model.onnx")
    note = upgrade_old_opset(ctx.staging / "model.onnx")  # so that validation's ONNX Runtime can run it
    specs = onnx_input_specs(ctx.staging / "model.onnx")
    return specs, user_calibration(ctx.job, specs), [f"onnx: {note}"] if note else []


def _onnx_variant(ctx: StageContext, variant: str, specs, calibration, log_path) -> dict:
    """An ONNX Runtime quantized variant of model.onnx and its record."""
    quantized = quantize_onnx(
        ctx.staging / "model.onnx", ctx.staging / f"model_{variant}.onnx", variant, log_path, calibration
    )
    return {**_record("onnx", variant, quantized.path.name, specs), "quantized_nodes": quantized.quantized_nodes}


def _tflite_record(result) -> dict:
    """A TFLite file's manifest record: its inputs and outputs, what it holds, and how int8_mixed or int8_fast chose."""
    return {
        **_record("tflite", result.variant, result.path.name, result.inputs),
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
        **({"fast_choice": result.fast_choice.to_dict()} if result.fast_choice else {}),
    }


def _int8_timer(ctx: StageContext):
    """int8_fast's timer on [export] int8_target; None when no int8_fast file is asked for."""
    if "int8_fast" not in ctx.job.export.variants:
        return None
    profile = ctx.job.profile
    return int8_timer(ctx.job.export.int8_target, profile.threads, profile.benchmark_binary)


# Outputs run ahead stay in this process until the validate stage recalls them, beside the converter's
# peak. Past this size (lraspp's on 32 samples: 135 MiB per run) validation runs them once the converter
# has ended instead: memory matters more there than the seconds saved.
AHEAD_LIMIT_MIB = 64.0


def _ahead_samples(ctx: StageContext, artifacts: list[dict], log_path) -> dict | None:
    """The samples to run validation's PyTorch and ONNX side on while the converter process works (the
    validate stage recalls those outputs); None when validation is better left to run them itself."""
    if ctx.job.validate_.eval_data:  # read against the ONNX file in the run directory, not yet there
        return None
    view = StageContext(ctx.job, ctx.store, ctx.staging, {"export": {"artifacts": artifacts}})
    with _running_ahead(log_path):
        samples, _ = held_out(view)
        if (held := _ahead_mib(ctx.staging / "model.onnx", samples)) <= AHEAD_LIMIT_MIB:
            step("export: running validation's PyTorch and ONNX side while the converter works")
            return samples
        with open(log_path, "a") as log:
            log.write(f"edgepipe: validation outputs not run ahead: they would hold {held:.0f} MiB\n")
    return None


@contextlib.contextmanager
def _running_ahead(log_path):
    """One core fewer than validation would use (the converter has the other). A failure is logged and
    left to validation, which runs the same and reports what is wrong; the memory goes back after."""
    before = torch.get_num_threads()
    try:
        yield max(1, validation_threads() - 1)
    except Exception as exc:
        with open(log_path, "a") as log:
            log.write(f"edgepipe: validation outputs not run ahead: {type(exc).__name__}: {exc}\n")
    finally:
        torch.set_num_threads(before)
        release_freed_heap()


def _files_ahead(ctx: StageContext, artifacts: list[dict], samples: dict, log_path) -> None:
    """The PyTorch and ONNX files' outputs, one file at a time, kept for the validate stage to recall."""
    for a in artifacts:
        with _running_ahead(log_path) as threads:
            run_ahead(ctx.staging / a["path"], a, samples, threads)


def _module_ahead(ctx: StageContext, artifacts: list[dict], module, samples: dict, threads: int) -> None:
    """The module's outputs, validation's reference, kept for the validate stage to recall."""
    from edgepipe.models.training import predict_outputs

    torch.set_num_threads(threads)
    specs = tuple(specs_of(artifacts[0]))
    outputs = predict_outputs(module, samples, [s.name for s in specs], reference_batch(ctx, specs))
    remember(exported_module_file(ctx), TORCH_REFERENCE, samples, {f"output_{i}": o for i, o in enumerate(outputs)})


def _ahead_mib(onnx_path, samples: dict) -> float:
    """MiB the outputs run ahead would hold: the PyTorch file's, the ONNX file's and the module's, each
    output's size per sample times the samples."""
    count = len(next(iter(samples.values())))
    per_sample = sum(
        math.prod(max(d, 1) for d in s.shape[1:]) * np.dtype(s.dtype).itemsize for s in onnx_output_specs(onnx_path)
    )
    return 3 * count * per_sample / 2**20


def _export_torch(ctx: StageContext, module, examples, specs: tuple[InputSpec, ...], log_path, onnx_path) -> tuple:
    """(torch.export program, rewrites): the module after export-friendly rewrites, exported, and its ONNX file.

    When torch.onnx cannot convert the program's fused attention (timm's MaxViT: its decomposition leaves a
    view its output does not allow; timm's NesT: 5-D query, key and value), the module is exported again
    with attention traced as plain ops, and that is one more rewrite."""
    from edgepipe.exporters.torch import (
        attention_failure,
        attention_traced_plain,
        export_friendly,
        export_onnx,
    )

    friendly, rewrites = export_friendly(module)
    program = torch.export.export(friendly, examples)
    names = [s.name for s in specs]
    try:
        export_onnx(program, examples, names, onnx_path, log_path, ctx.job.export.opset)
    except ExportError as exc:
        if (why := attention_failure(exc)) is None:
            raise
        del program
        with attention_traced_plain():
            program = torch.export.export(friendly, examples)
        export_onnx(program, examples, names, onnx_path, log_path, ctx.job.export.opset)
        rewrites = [
            *rewrites,
            f"scaled_dot_product_attention traced as matmul, softmax and matmul (torch.onnx cannot convert "
            f"the fused op here: {why})",
        ]
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
    if in_a_child(ctx.job.export.converter):
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
