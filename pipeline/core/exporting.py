"""`edgepipe export`: the job it runs and the DESIGN.md JSON it prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from edgepipe.exporters.quantize import ORT_VARIANTS, VARIANTS
from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.core.config import ExportSection, JobConfig, default_job_text, validate_job
from edgepipe.pipeline.core.run_view import RunView
from edgepipe.pipeline.core.runner import RunResult
from edgepipe.pipeline.core.toml_config import parse_toml

# Per-artifact records that exist for some formats and variants only.
_DETAILS = (
    "outputs",
    "custom_ops",
    "quantization",
    "quantized_nodes",
    "kept_float",
    "mixed_choice",
    "fast_choice",
    "sensitivity",
    "op_count",
    "op_histogram",
    "size_split",
    "boundary",
)


@dataclass(frozen=True)
class UserData:
    """`edgepipe export`'s data options: calibration and evaluation sources, and how image folders are read."""

    calibration: str | None = None
    eval_data: str | None = None
    image_mean: str | None = None  # "0.485,0.456,0.406"
    image_std: str | None = None
    pixel_scale: float | None = None

    def apply(self, data: dict) -> None:
        """Write these options into a job's TOML dict (paths made absolute)."""
        if self.calibration:
            data["export"]["calibration"] = _absolute(self.calibration)
        if self.eval_data:
            data["validate"]["eval_data"] = _absolute(self.eval_data)
        images = data["export"].setdefault("images", {})
        for key, text in (("mean", self.image_mean), ("std", self.image_std)):
            if text is not None:
                try:
                    images[key] = [float(x) for x in text.split(",")]
                except ValueError:
                    raise ConfigError(
                        f"--image-{key} {text!r}: expected numbers joined by commas, e.g. 0.485,0.456,0.406"
                    ) from None
        if self.pixel_scale is not None:
            images["pixel_scale"] = self.pixel_scale


def export_job(
    model: str,
    variants: tuple[str, ...],
    inputs: Path | None = None,
    allow_flex: bool = False,
    example_inputs: tuple[str, ...] = (),
    weights: Path | None = None,
    onnx_variants: tuple[str, ...] = (),
    user_data: UserData = UserData(),
    converter: str = "auto",
    int8_target: str = "host",
) -> JobConfig:
    """The default job with this model, variants and options (checked before anything is written)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(
            f"unknown TFLite variant(s) {', '.join(unknown) or '(none given)'}; available here: {', '.join(VARIANTS)}"
        )
    unknown = [v for v in onnx_variants if v not in ORT_VARIANTS]
    if unknown:
        raise ConfigError(f"unknown ONNX Runtime variant(s) {', '.join(unknown)}; available: {', '.join(ORT_VARIANTS)}")
    data = parse_toml(default_job_text(), "<embedded default job>")
    # The default job's compression and gate are for `edgepipe run`; export converts the model as it is.
    data.pop("compress", None), data.pop("gate", None)
    name = Path(model).stem if model.endswith(".onnx") else model
    data["job"].update(
        name=f"export-{_safe(name)}",
        model=str(Path(model).resolve()) if model.endswith(".onnx") else model,
        inputs=list(example_inputs),
    )
    if weights is not None:
        data["job"]["weights"] = str(Path(weights).resolve())
    choices = get_args(ExportSection.model_fields["converter"].annotation)
    if converter not in choices:
        raise ConfigError(f"--converter {converter!r} is unknown; choose {', '.join(choices)}")
    data["export"].update(
        variants=list(variants),
        onnx_variants=list(onnx_variants),
        allow_flex=allow_flex,
        converter=converter,
        int8_target=int8_target,
    )
    if inputs is not None:
        data["validate"]["inputs"] = str(Path(inputs).resolve())
    user_data.apply(data)
    return validate_job(data, "edgepipe export")


def export_summary(job: JobConfig, result: RunResult) -> dict:
    """{"model", "run_dir", "artifacts": [...]} with size, inputs, metrics and ledger per artifact."""
    run = RunView.read(result.run_dir)
    artifacts = [
        {
            "format": art.format,
            "variant": art.variant,
            "path": str(result.run_dir / art.path),
            "size_bytes": art.size_bytes,
            "inputs": art.record["inputs"],
            "metrics": dict(run.metrics(art.key)),
            "ledger": dict(run.ledger(art.key)) or None,
            **{k: art.record[k] for k in _DETAILS if k in art.record},
        }
        for art in run.artifacts
    ]
    return {
        "model": job.job.model,
        "run_dir": str(result.run_dir),
        "artifacts": artifacts,
        "rewrites": run.result("export").get("rewrites", []),
        "onnx_passes": run.result("export").get("onnx_passes", []),
    }


def _absolute(source: str) -> str:
    """A path made absolute (the run may start elsewhere); a pkg.module:function reference as it is."""
    from edgepipe.pipeline.core.user_data import is_function_ref

    return source if is_function_ref(source) else str(Path(source).resolve())


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
