"""report.md: what was built, how well it agrees with PyTorch, and how fast it runs."""

from __future__ import annotations

from pathlib import Path

from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.run_view import RunView
from edgepipe.pipeline.core.sources import model_source
from edgepipe.pipeline.report.compress import compress_lines
from edgepipe.pipeline.report.figures import figure
from edgepipe.pipeline.report.int8_speed import int8_speed_lines
from edgepipe.pipeline.report.phones import phone_lines
from edgepipe.pipeline.report.profile import profile_lines
from edgepipe.pipeline.report.variants import sensitivity_lines, variant_rows, variants_table, write_plots
from edgepipe.profilers.stats import BOOTSTRAP_BLOCKS, BOOTSTRAP_RESAMPLES


def run_report(ctx: StageContext) -> dict:
    """Write report.md and its plots from the results of the earlier stages."""
    task = model_source(ctx.job).task
    metric_name = task.primary if task else None
    run = RunView.of_manifest(ctx.store.manifest, ctx.store.run_dir, ctx.results, ctx.job)
    rows = variant_rows(run, metric_name)
    plots = write_plots(rows, metric_name, ctx.staging)
    variants = [
        "## Variants side by side",
        "",
        *variants_table(rows, metric_name, ctx.job.profile.threads),
        "",
        *[f"![{Path(p).stem}]({p})" for p in plots],
        "",
        *int8_speed_lines(ctx.results),
        *sensitivity_lines(ctx.results),
    ]
    text = render(run, variants)
    (ctx.staging / "report.md").write_text(text)
    return {"path": "report.md", "plots": plots}


def render(run: RunView, variants: list[str] = ()) -> str:
    """The Markdown report of one run."""
    results, tolerances = run.results, run.job["validate"]
    lines = [f"# edgepipe run: {run.job['job']['name']}", "", f"Model `{run.job['job']['model']}`.", ""]
    if results.get("train", {}).get("kept"):
        t = results["train"]
        held = f"; held-out {_fmt_metrics(t['metrics'])}" if t["metrics"] else ""
        lines += [f"Not trained: kept {t['kept']}; {t['parameters']:,} parameters{held}.", ""]
    elif "train" in results:
        t = results["train"]
        lines += [
            f"Trained {t['train']['epochs_run']} epochs (best epoch {t['train']['best_epoch']}, "
            f"validation loss {t['train']['best_val_loss']:.4f}); {t['parameters']:,} parameters; "
            f"held-out {_fmt_metrics(t['metrics'])}.",
            "",
        ]
    lines += compress_lines(run)
    validate = run.result("validate")
    lines += [
        "## Artifacts and numerics",
        "",
        f"Reference: `{validate.get('reference', '?')}`; float artifacts: max abs error at most "
        f"{tolerances['rel_tolerance']:g} x each output's max magnitude (fp16: "
        f"{tolerances['fp16_rel_tolerance']:g}); quantized artifacts: output SQNR at least "
        f"{tolerances['quantized_min_sqnr_db']:g} dB.",
        "",
        "| artifact | format | variant | size (bytes) | metric | max abs err | cosine | SQNR (dB) | ok |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for art in run.artifacts:
        led = run.ledger(art.key)
        lines.append(
            f"| `{art.path}` | {art.format} | {art.variant} | {art.size_bytes or 0:,} | "
            f"{_fmt_metrics(run.metrics(art.key))} | {figure(led.get('max_abs'), '.2e')} | "
            f"{figure(led.get('cosine'), '.6f')} | {figure(led.get('sqnr_db'), '.1f')} | {_ok(led.get('ok'))}"
            f"{' (float rounding)' if led.get('float_rounding') else ''} |"
        )
    lines += [f"- `{key}` ran through {how}" for key, how in validate.get("runners", {}).items()]
    lines += [
        "",
        'Per-hop, per-output figures: `ledger.json`; "float rounding": over the tolerance, but within it plus '
        "10 x the relative tolerance of every value, at the SQNR the tolerance stands for.",
        "",
        "## Host latency",
        "",
        "| runtime | artifact | p50 ms | p90 ms (95 % CI) | p99 ms | mean ms | CV (std/mean) | n | throughput /s "
        "| peak RSS MB | energy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    profiled = results.get("profile", {}).get("results", [])
    reasons = {r["energy"].get("reason") for r in profiled if r["energy"]["status"] != "measured"}
    for r in profiled:
        lat = r["latency_ms"]
        energy = r["energy"]
        energy_text = (
            f"{energy['mj_per_inference']:.4f} mJ/inf"
            if energy["status"] == "measured"
            else "unavailable"
            if len(reasons) == 1
            else f"unavailable: {energy['reason']}"
        )
        lo, hi = lat["ci95"]["p90"]
        mark = " (builtin kernels)" if r.get("kernels_note") else ""
        lines.append(
            f"| {r['runtime']} | `{r['artifact']}`{mark} | {lat['p50']:.4f} | {lat['p90']:.4f} ({lo:.4f}-{hi:.4f}) | "
            f"{lat['p99']:.4f} | {lat['mean']:.4f} | {lat['cv']:.2f} | {lat['n']} | {r['throughput_ips']:.0f} | "
            f"{r['memory']['peak_rss_mb']:.0f} | {energy_text} |"
        )
    notes = [
        f"`{r['artifact']}`: {r['kernels_note']}; TFLite's built-in kernels ran it, so its latency is not "
        "what XNNPACK would give."
        for r in profiled
        if r.get("kernels_note")
    ]
    notes += [f"Energy unavailable for every row: {reasons.pop()}."] if len(reasons) == 1 else []
    lines += ["", *notes] if notes else []
    if results.get("profile"):
        device = results["profile"]["results"][0]["device"]
        lines += [
            "",
            f"Host: {device['machine']}, {device['cpu_count']} logical CPUs, "
            f"{device['threads']} thread(s); percentiles by numpy's linear method, "
            f"confidence intervals by block bootstrap ({BOOTSTRAP_BLOCKS} stretches of the run, "
            f"{BOOTSTRAP_RESAMPLES} resamples); "
            "peak RSS of a child process that loaded and ran only that model.",
        ]
    lines += ["", *profile_lines(results.get("profile", {})), *phone_lines(results.get("profile", {}))]
    versions = ", ".join(f"{k} {v}" for k, v in run.versions.items() if v)
    lines += ["", *variants, "", "## Tool versions", "", versions, ""]
    return "\n".join(lines)


def _fmt_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "-"


def _ok(value) -> str:
    return {True: "yes", False: "NO"}.get(value, "-")
