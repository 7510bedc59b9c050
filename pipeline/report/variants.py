"""The variant table of report.md (size, metric, numerics, latency side by side) and its trade-off plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepipe.pipeline.core.run_view import RunView, artifact_key, format_variant
from edgepipe.pipeline.report.figures import figure
from edgepipe.pipeline.report.plots import Point, tradeoff_plot

_FRACTIONS = ("accuracy", "precision", "recall", "f1", "roc_auc")  # shown as percentage points


@dataclass(frozen=True)
class VariantRow:
    """One artifact's figures from the export, validate and profile stages."""

    format: str
    variant: str
    path: str
    size_bytes: int
    size_ratio: float | None  # vs the fp32 artifact of the same format
    metric: float | None
    metric_delta: float | None  # vs the PyTorch fp32 reference
    sqnr_db: float | None
    p50_ms: float | None
    p90_ms: float | None
    speedup: float | None  # fp32 p50 / this p50, same format

    @property
    def label(self) -> str:
        return format_variant(self.format, self.variant)


def variant_rows(run: RunView, metric_name: str | None) -> list[VariantRow]:
    """Every exported artifact with its figures; absent figures (not profiled, no metric) are None."""
    validate = run.result("validate")
    reference = run.metrics(validate.get("reference", "")).get(metric_name)
    latency = {artifact_key(r): r["latency_ms"] for r in run.result("profile").get("results", [])}
    fp32 = {a.format: a for a in run.artifacts if a.variant == "fp32"}
    rows = []
    for art in run.artifacts:
        base = fp32.get(art.format)
        metric = run.metrics(art.key).get(metric_name)
        lat, base_lat = latency.get(art.key), latency.get(f"{art.format}:fp32")
        rows.append(
            VariantRow(
                art.format,
                art.variant,
                art.path,
                art.size_bytes or 0,
                (art.size_bytes or 0) / base.size_bytes if base and base.size_bytes else None,
                metric,
                metric - reference if metric is not None and reference is not None else None,
                run.ledger(art.key).get("sqnr_db"),
                lat["p50"] if lat else None,
                lat["p90"] if lat else None,
                base_lat["p50"] / lat["p50"] if lat and base_lat else None,
            )
        )
    return rows


def variants_table(rows: list[VariantRow], metric_name: str | None, threads: int) -> list[str]:
    """Markdown lines: one row per artifact."""
    unit = " (points)" if metric_name in _FRACTIONS else ""
    lines = [
        f"Latency: host, {threads} thread(s). Delta: against the PyTorch fp32 reference. "
        "Size ratio and speed-up: against the fp32 artifact of the same format.",
        "",
        f"| artifact | size (bytes) | size vs fp32 | {metric_name or 'metric'} | delta{unit} | SQNR (dB) | "
        "p50 ms | p90 ms | speed-up vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scale = 100.0 if metric_name in _FRACTIONS else 1.0
    for r in rows:
        lines.append(
            f"| {r.label} | {r.size_bytes:,} | {figure(r.size_ratio, '.2f', 'x')} | {figure(r.metric, '.4f')} | "
            f"{figure(None if r.metric_delta is None else r.metric_delta * scale, '+.2f')} | "
            f"{figure(r.sqnr_db, '.1f')} | {figure(r.p50_ms, '.4f')} | {figure(r.p90_ms, '.4f')} | "
            f"{figure(r.speedup, '.2f', 'x')} |"
        )
    return lines


def write_plots(rows: list[VariantRow], metric_name: str | None, out_dir: Path) -> list[str]:
    """plots/size_vs_metric.png and plots/latency_vs_metric.png; none without a task metric."""
    measured = [r for r in rows if r.metric is not None]
    if metric_name is None or len(measured) < 2:
        return []
    written = [
        tradeoff_plot(
            [Point(r.label, r.size_bytes, r.metric) for r in measured],
            "file size (bytes)",
            metric_name,
            "size vs metric",
            out_dir / "plots" / "size_vs_metric.png",
        )
    ]
    timed = [r for r in measured if r.p50_ms is not None]
    if len(timed) >= 2:
        written.append(
            tradeoff_plot(
                [Point(r.label, r.p50_ms, r.metric) for r in timed],
                "host p50 latency (ms)",
                metric_name,
                "latency vs metric",
                out_dir / "plots" / "latency_vs_metric.png",
            )
        )
    return [str(p.relative_to(out_dir)) for p in written]


def sensitivity_lines(results: dict) -> list[str]:
    """Markdown: the layers int8 hurts most, how int8_mixed chose what to keep in float, and what it bought."""
    mixed = next((a for a in results["export"]["artifacts"] if a.get("sensitivity")), None)
    if mixed is None:
        return []
    ledger = results.get("validate", {}).get("ledger", {})
    choice = mixed["mixed_choice"]
    lines = [
        "## Per-layer int8 sensitivity",
        "",
        *_sensitivity_method(choice),
        "",
        "| rank | layer (PyTorch module, else TFLite tensor) | op | output shape | estimated (dB) | "
        "SQNR alone (dB) | bytes in float | kept in float |",
        "|---:|---|---|---|---:|---:|---:|---|",
    ]
    for rank, loss in enumerate(mixed["sensitivity"][:10], 1):
        name = loss.get("module") or loss["name"]
        name = name if len(name) <= 60 else name[:57] + "..."
        lines.append(
            f"| {rank} | `{name}` | {loss['op']} | {'x'.join(map(str, loss['shape']))} | "
            f"{figure(loss.get('estimated_sqnr_db'), '.1f')} | {figure(loss['sqnr_db'], '.1f')} | "
            f"{figure(loss['float_bytes'], ',')} | {'yes' if loss['name'] in mixed['kept_float'] else ''} |"
        )
    trail = "; ".join(
        f"{len(step['float_layers'])} float: {figure(step['sqnr_db'], '.1f')} dB, {step['size_bytes']:,} bytes"
        for step in choice["steps"]
    )
    verdict = (
        f"reached with {len(mixed['kept_float'])} layer(s) in float32"
        if choice["met"]
        else f"not reached with the {len(mixed['kept_float'])} layer(s) [export] mixed_float_layers allows"
    )
    lines += [
        "",
        f"int8_mixed adds measured layers by noise removed per byte kept in float until the output reaches "
        f"{choice['target_sqnr_db']:.1f} dB (the SQNR floor plus a 1 dB margin), then drops those it can do "
        f"without: {verdict} (steps: {trail}).",
    ]
    plain, kept = ledger.get("tflite:int8_float_io") or ledger.get("tflite:int8"), ledger.get("tflite:int8_mixed")
    if plain and kept:
        lines += [
            "",
            f"Against PyTorch on the validation samples the output SQNR moves from {plain['sqnr_db']:.1f} dB "
            f"(all int8) to {kept['sqnr_db']:.1f} dB (int8_mixed); sizes, metrics and latency of both are in "
            "the table above.",
        ]
    return lines


def _sensitivity_method(choice: dict) -> list[str]:
    """What the sensitivity table's figures are, and on how many layers and samples they were measured."""
    samples = choice.get("search_samples")
    on = f"{samples} calibration samples" if samples else "the calibration samples"
    # Records written before the group search (no layers_measured) measured every layer alone.
    measured, quantized = choice.get("layers_measured"), choice.get("layers_quantized")
    scope = (
        "every layer"
        if measured is None
        else f"the {measured} of {quantized} layers estimated worst (the rest show -), after "
        f"{choice.get('group_measurements')} group measurements"
    )
    return [
        "SQNR alone is the model output's SQNR against the float model when that layer alone is int8; bytes in "
        "float is how much the int8 file grows when that layer alone stays float32. Both are measured whole-file "
        f"on {on} for {scope}. Estimated: each group of consecutive layers measured with only it in int8, the "
        "noisiest bisected, and a group's output noise shared among its layers by their local noise (their own "
        "op's error, and an input's damage that surfaces only at the op or its readers). Measured layers first, "
        "lowest SQNR first.",
    ]
