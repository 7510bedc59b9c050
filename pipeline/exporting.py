"""`edgepipe export`: the job it runs and the DESIGN.md JSON it prints."""
from __future__ import annotations

import tomllib
from pathlib import Path

from exporters.onnx_to_tflite import VARIANTS
from exporters.ort_quantize import ORT_VARIANTS
from models.errors import ConfigError
from pipeline.config import JobConfig, default_job_text, validate_job
from pipeline.runner import RunResult


# Per-artifact records that exist for some formats and variants only.
_DETAILS = ("custom_ops", "quantization", "quantized_nodes", "kept_float", "sensitivity")


def export_job(model: str, variants: tuple[str, ...], inputs: Path | None = None, allow_flex: bool = False,
               example_inputs: tuple[str, ...] = (), weights: Path | None = None,
               onnx_variants: tuple[str, ...] = ()) -> JobConfig:
    """The default job with this model, variants and options (checked before anything is written)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"unknown TFLite variant(s) {', '.join(unknown) or '(none given)'}; "
                          f"available here: {', '.join(VARIANTS)}")
    unknown = [v for v in onnx_variants if v not in ORT_VARIANTS]
    if unknown:
        raise ConfigError(f"unknown ONNX Runtime variant(s) {', '.join(unknown)}; available: {', '.join(ORT_VARIANTS)}")
    data = tomllib.loads(default_job_text())
    name = Path(model).stem if model.endswith(".onnx") else model
    data["job"].update(name=f"export-{_safe(name)}", model=str(Path(model).resolve()) if model.endswith(".onnx")
                       else model, inputs=list(example_inputs))
    if weights is not None:
        data["job"]["weights"] = str(Path(weights).resolve())
    data["export"].update(variants=list(variants), onnx_variants=list(onnx_variants), allow_flex=allow_flex)
    if inputs is not None:
        data["validate"]["inputs"] = str(Path(inputs).resolve())
    return validate_job(data, "edgepipe export")


def export_summary(job: JobConfig, result: RunResult) -> dict:
    """{"model", "run_dir", "artifacts": [...]} with size, inputs, metrics and ledger per artifact."""
    from pipeline.store import Store

    manifest = Store.open(result.run_dir).manifest
    sizes = {a["path"]: a["size_bytes"] for a in manifest["artifacts"]}
    validate = result.results["validate"]
    artifacts = []
    for art in result.results["export"]["artifacts"]:
        key = f"{art['format']}:{art['variant']}"
        artifacts.append({
            "format": art["format"], "variant": art["variant"], "path": str(result.run_dir / art["path"]),
            "size_bytes": sizes[art["path"]], "inputs": art["inputs"],
            "metrics": validate["metrics"].get(key, {}), "ledger": validate["ledger"].get(key),
            **{k: art[k] for k in _DETAILS if k in art},
        })
    return {"model": job.job.model, "run_dir": str(result.run_dir), "artifacts": artifacts,
            "rewrites": result.results["export"].get("rewrites", [])}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
