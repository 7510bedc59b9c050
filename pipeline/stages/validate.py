"""Stage validate: the numerics ledger of every hop and the task metric of every artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edgepipe.exporters.onnx import onnxruntime_copy
from edgepipe.exporters.quantize import ORT_VARIANTS, VARIANTS
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import InputFileError, ParityError, first_line
from edgepipe.models.shared.memory import release_freed_heap
from edgepipe.models.shared.progress import step
from edgepipe.pipeline.core.context import StageContext, onnx_source
from edgepipe.pipeline.core.feeding import TORCH_REFERENCE, held_out, recall, run_artifact
from edgepipe.pipeline.core.ledger import (
    HopLedger,
    compare,
    judged_by_float64,
    over_tolerance,
    rejudged_by_float64,
    require_parity,
    sample_count,
)
from edgepipe.pipeline.core.run_view import artifact_key
from edgepipe.pipeline.core.sources import metric_drop, model_source
from edgepipe.pipeline.core.store import write_json
from edgepipe.profilers.runtimes import open_onnx_reference

LEDGER = "ledger.json"
VALIDATE_LOG = "logs/validate.log"


def run_validate(ctx: StageContext) -> dict:
    """Compare every artifact with the reference; write ledger.json; fail once on any mismatch."""
    artifacts = ctx.results["export"]["artifacts"]
    samples, metric = held_out(ctx)
    runners: dict[str, str] = {}  # an artifact run by other than its format's runtime, and why
    reference_name = "torch" if onnx_source(ctx.job) is None else "onnx:fp32"
    figures = _compared(ctx, artifacts, samples, metric, runners, reference_name)
    order = [artifact_key(a) for a in artifacts if artifact_key(a) != reference_name]  # the ledger's order
    limits = {key: figures.limits[key] for key in order}
    hops = [figures.hops[key] for key in order] + [figures.onnx_hops[k] for k in order if k in figures.onnx_hops]
    metrics = {key: figures.metrics[key] for key in [reference_name, *order]}
    ledger = {
        "rel_tolerance": ctx.job.validate_.rel_tolerance,
        "samples": sample_count(samples),
        "tolerances": {key: asdict(limit) for key, limit in limits.items()},
        "runners": runners,
        "hops": [h.to_dict() for h in hops],
        "metrics": metrics,
        **({"float64_reference": figures.float64.status} if figures.float64 and figures.float64.status else {}),
    }
    source = model_source(ctx.job)
    lower = source.task.lower_is_better if source.task else ()
    problems = _metric_drops(metrics, reference_name, limits, lower)
    try:
        require_parity(hops)
    except ParityError as exc:
        problems.insert(0, str(exc))
    if problems:
        write_json(ctx.store.run_dir / LEDGER, ledger)  # complete, but not recorded as done
        raise ParityError("; ".join(problems))
    write_json(ctx.staging / LEDGER, ledger)
    return {
        "reference": reference_name,
        "runners": runners,
        "metrics": metrics,
        "lower_is_better": list(lower),
        "ledger": {h.candidate: h.summary() for h in hops if h.reference == reference_name},
    }


@dataclass
class _Figures:
    """Per artifact key: its limits, its hop from the reference, a TFLite file's hop from the ONNX file, its metrics."""

    limits: dict = field(default_factory=dict)
    hops: dict = field(default_factory=dict)
    onnx_hops: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    float64: _Float64Truth | None = None  # beside a PyTorch reference

    def compare(self, validate, key: str, reference: tuple[str, dict], outputs: dict, onnx_outputs: dict | None):
        """The artifact's hops, within its limits; a float output over its tolerance judged once more
        against PyTorch's float64 outputs, where there is a PyTorch reference."""
        limit = self.limits[key] = limits_for(validate, key)
        name, values = reference
        hop = compare(f"{name} -> {key}", name, key, values, outputs, *limit.numerics)
        self.hops[key] = self._judged(hop, outputs, limit.rel_tolerance)
        if key.startswith("tflite:") and onnx_outputs is not None:
            hop = compare(f"onnx:fp32 -> {key}", "onnx:fp32", key, onnx_outputs, outputs, *limit.numerics)
            self.onnx_hops[key] = self._judged(hop, outputs, limit.rel_tolerance)

    def _judged(self, hop: HopLedger, outputs: dict, rel_tolerance: float | None) -> HopLedger:
        over = any(over_tolerance(o) for o in hop.outputs)
        if not over or not judged_by_float64(rel_tolerance) or self.float64 is None:
            return hop
        if (truth := self.float64.outputs()) is None:
            return hop
        return rejudged_by_float64(hop, outputs, truth, self.float64.float32)


class _Float64Truth:
    """PyTorch's outputs in float64 on the validation samples, run once, when a float hop first needs them."""

    def __init__(self, ctx: StageContext, samples: dict, float32: dict):
        self.ctx, self.samples, self.float32 = ctx, samples, float32
        self.status = ""  # "measured", or why there is no float64 reference; empty until asked
        self._outputs: dict | None = None

    def outputs(self) -> dict | None:
        if self.status:
            return self._outputs
        from edgepipe.models.training import predict_outputs
        from edgepipe.pipeline.core.modules import compressed_module, reference_batch

        step("validate: PyTorch in float64 on the same samples, to tell float rounding from an error")
        specs = model_source(self.ctx.job).inputs
        wide = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in self.samples.items()}
        try:
            module = compressed_module(self.ctx).double()  # rebuilt for each caller: no one else's copy
            outputs = predict_outputs(module, wide, [s.name for s in specs], reference_batch(self.ctx, specs))
        except Exception as exc:  # a module that builds float32 tensors of its own cannot run in float64
            self.status = (
                f"unavailable: PyTorch cannot run the model in float64 ({type(exc).__name__}: {first_line(exc)[:160]})"
            )
            return None
        self._outputs, self.status = {f"output_{i}": out for i, out in enumerate(outputs)}, "measured"
        return self._outputs


def _compared(
    ctx: StageContext, artifacts: list, samples: dict, metric, runners: dict, reference_name: str
) -> _Figures:
    """Every artifact run, compared and its metric taken one at a time: only the reference's and the ONNX
    file's outputs are held beside the one compared (a segmentation model's 32 outputs: 135 MiB each)."""
    figures = _Figures()
    reference = torch_reference(ctx, samples) if reference_name == "torch" else None
    if reference is not None:
        figures.metrics["torch"] = metric(reference) if metric else {}
        figures.float64 = _Float64Truth(ctx, samples, reference)
    onnx_outputs = None  # beside a torch reference, every TFLite file is compared with the ONNX file too
    with output_to_log(ctx.staging / VALIDATE_LOG):  # runtimes print native banners on fd 2
        for a in sorted(artifacts, key=lambda a: artifact_key(a) != "onnx:fp32"):  # the ONNX file first
            key = artifact_key(a)
            step(f"validate: {a['path']} on {sample_count(samples)} held-out samples")
            outputs = _outputs(ctx, a, samples, runners)
            release_freed_heap()  # the runtime's session and buffers, before the next one opens
            figures.metrics[key] = metric(outputs) if metric else {}
            if key == reference_name:  # an ONNX file's own outputs are the reference
                reference = outputs
                continue
            figures.compare(ctx.job.validate_, key, (reference_name, reference), outputs, onnx_outputs)
            onnx_outputs = outputs if key == "onnx:fp32" else onnx_outputs
    return figures


def _outputs(ctx: StageContext, art: dict, samples: dict, runners: dict[str, str]) -> dict:
    """The artifact's outputs on the samples. An ONNX file that ONNX Runtime cannot load (a newer IR or
    opset, an op it lacks) runs as a copy lowered to what it loads where that is exact, else through
    onnx.reference; runners says which and why."""
    path = ctx.path(art["path"])
    try:
        return run_artifact(path, art, samples)
    except InputFileError as exc:
        if art["format"] != "onnx" or art["variant"] != "fp32":
            raise
        cannot = str(exc)
    copy = ctx.staging / f"lowered_{path.name}"
    lowered = onnxruntime_copy(path, copy)
    try:
        if lowered is not None:
            runners[artifact_key(art)] = f"onnxruntime on a copy: {lowered}; {cannot}"
            return run_artifact(copy, art, samples)
        runners[artifact_key(art)] = f"onnx.reference: {cannot}"
        return run_artifact(path, art, samples, open_onnx_reference)
    finally:
        copy.unlink(missing_ok=True)


def torch_reference(ctx: StageContext, samples: dict) -> dict:
    """Outputs of the original PyTorch module (before any export rewrite) on the samples."""
    from edgepipe.models.training import predict_outputs
    from edgepipe.pipeline.core.modules import compressed_module, exported_module_file, reference_batch

    if ahead := recall(exported_module_file(ctx), TORCH_REFERENCE, samples):
        return ahead  # run by the export stage from the module it exported, while the converter worked
    specs = model_source(ctx.job).inputs
    outputs = predict_outputs(compressed_module(ctx), samples, [s.name for s in specs], reference_batch(ctx, specs))
    return {f"output_{i}": out for i, out in enumerate(outputs)}


@dataclass(frozen=True)
class Limits:
    """What one artifact must meet: a max abs error relative to the output's scale or an SQNR floor,
    and a metric drop."""

    rel_tolerance: float | None
    min_sqnr_db: float | None
    max_metric_drop: float

    @property
    def numerics(self) -> tuple[float | None, float | None]:
        """(rel_tolerance, min_sqnr_db), as the ledger's compare() takes them."""
        return self.rel_tolerance, self.min_sqnr_db


def limits_for(validate, key: str) -> Limits:
    """The limits of an artifact key such as 'tflite:int8'.

    Quantized outputs are judged by SQNR: their worst single value over hundreds of samples
    is rounding noise, while the noise power says how much of the signal survives. The
    figures of every variant are still measured and recorded in full.
    """
    fmt, _, variant = key.partition(":")
    if fmt == "onnx" and variant in ORT_VARIANTS:
        numerics = "quantized"
    else:
        numerics = VARIANTS[variant].numerics if fmt == "tflite" and variant in VARIANTS else "float32"
    if numerics == "quantized":
        return Limits(None, validate.quantized_min_sqnr_db, validate.quantized_max_metric_drop)
    if numerics == "float16":
        return Limits(validate.fp16_rel_tolerance, None, validate.max_metric_drop)
    return Limits(validate.rel_tolerance, None, validate.max_metric_drop)


def _metric_drops(metrics: dict, reference: str, limits: dict[str, Limits], lower: tuple[str, ...]) -> list[str]:
    """Every artifact metric that is worse than the reference's by more than its allowed drop (a rise for
    the metrics in `lower`, where lower is better)."""
    problems = []
    for key, values in metrics.items():
        for name, value in values.items():
            drop = metric_drop(metrics[reference][name], value, name in lower)
            if key != reference and drop > limits[key].max_metric_drop:
                hint = (
                    "; a quantization-aware fine-tune may win it back ([compress] qat = true)"
                    if limits[key].min_sqnr_db is not None
                    else ""
                )
                problems.append(
                    f"{key} {name} {value:.4f} is {drop:.4f} {'above' if name in lower else 'below'} {reference} "
                    f"(allowed {limits[key].max_metric_drop}){hint}"
                )
    return problems
