"""The compression section of report.md: what distillation and pruning did, in measured figures."""

from __future__ import annotations

from edgepipe.pipeline.core.run_view import RunView, artifact_key
from edgepipe.pipeline.core.sources import metric_drop
from edgepipe.pipeline.report.figures import figure


def compress_lines(run: RunView) -> list[str]:
    """Markdown lines for the [compress] steps; none when the job compressed nothing."""
    compress = run.result("compress")
    if not compress.get("steps"):
        return []
    trained, final = compress["trained"], compress["compressed"]
    lower = tuple(compress.get("lower_is_better", ()))
    sizes = {a.key: a.size_bytes for a in run.artifacts}
    before = {artifact_key(a): a["size_bytes"] for a in run.result("export").get("uncompressed", [])}
    speed = _vs_uncompressed(run)
    lines = [
        "## Compression",
        "",
        "Each step's figures on the held-out set; file sizes and host latency for the uncompressed model and the "
        "exported result (latency timed interleaved with the uncompressed model's file of the same variant, "
        "one process, p50 ratio with its 95 % interval).",
        "",
        "| step | parameters | MACs | fp32 file | int8 file | host p50 vs uncompressed | metrics | drop | training |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
        _row("trained model", trained, trained, lower, before, "1.00x (reference)", ""),
    ]
    for step in compress["steps"]:
        run_ = step.get("train") or step.get("finetune")
        training = _training(run_)
        if step.get("pruned"):  # right after the cut, before recovery
            lines.append(_row(f"{_describe(step, False)}, before recovery", step["pruned"], trained, lower, {}, "", ""))
        lines.append(_row(_describe(step), step, trained, lower, {}, "", training))
    lines.append(_row("**exported**", final, trained, lower, sizes, speed, ""))
    lines += [
        "",
        f"Result: {final['parameters']:,} parameters ({final['parameters'] / trained['parameters']:.2f}x the "
        f"trained model), {_ratio(final.get('macs'), trained.get('macs'))} its MACs, {_metrics(final['metrics'])}.",
        "",
    ]
    if any(s["step"] == "prune_magnitude" for s in compress["steps"]):
        lines += [
            f"Magnitude pruning sets weights to zero but keeps every tensor's shape: TFLite and ONNX store "
            f"tensors densely, so the exported files are as large as the unpruned model's and dense kernels "
            f"do the same arithmetic "
            f"(fp32 TFLite: {figure(sizes.get('tflite:fp32'), ',', ' bytes')}). The zeros only pay off with a "
            "general-purpose compressor on the download, or a sparse-aware runtime; channel pruning "
            '(`prune = "channels"`) shrinks the files and the work instead.',
            "",
        ]
    kept = {name: why for s in compress["steps"] for name, why in s.get("kept_whole", {}).items()}
    if kept:
        lines += ["Layers whose channels stayed whole: " + "; ".join(f"`{n}` ({w})" for n, w in kept.items()), ""]
    return lines


def _row(name: str, figures: dict, trained: dict, lower: tuple, sizes: dict, speed: str, training: str) -> str:
    drops = [
        f"{k} {metric_drop(trained['metrics'][k], v, k in lower):+.4f}"
        for k, v in figures["metrics"].items()
        if k in trained["metrics"]
    ]
    return (
        f"| {name} | {figures['parameters']:,} | {figure(figures.get('macs'), ',')} | "
        f"{figure(sizes.get('tflite:fp32'), ',')} | {figure(sizes.get('tflite:int8'), ',')} | {speed} | "
        f"{_metrics(figures['metrics'])} | {', '.join(drops) if figures is not trained else ''} | {training} |"
    )


def _vs_uncompressed(run: RunView) -> str:
    """The exported fp32 file's p50 latency ratio to the uncompressed fp32 file, timed interleaved."""
    for r in run.result("profile").get("results", []):
        paired = r.get("vs_uncompressed")
        if paired and (r["format"], r["variant"]) == ("tflite", "fp32"):
            low, high = paired["p50_ratio_ci95"]
            return f"{paired['p50_ratio']:.2f}x [{low:.2f}, {high:.2f}] (fp32)"
    return "not measured"


def _ratio(value, reference) -> str:
    return f"{value / reference:.2f}x" if value and reference else "n/a"


def _describe(step: dict, recovered: bool = True) -> str:
    if step["step"] == "distill":
        return f"distilled into student ({step['student']}, T={step['temperature']:g}, alpha={step['alpha']:g})"
    if step["step"] == "prune_channels":
        removed = sum(c["channels"] - c["kept"] for c in step["channels"])
        total = sum(c["channels"] for c in step["channels"])
        where = f" (step {step['index']} of {step['of']})" if step.get("of", 1) > 1 else ""
        recovery = f", recovery: {step['recovery']}" if step.get("recovery") and recovered else ""
        return (
            f"channel pruning {step['amount']:.0%}{where}: {removed} of {total} channels removed "
            f"in {len(step['channels'])} layers{recovery}"
        )
    if step["step"] == "qat":
        return "quantization-aware fine-tune (int8 weights per channel, int8 activations per tensor)"
    return f"magnitude pruning {step['amount']:.0%} (global, unstructured)"


def _metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _training(run_: dict | None) -> str:
    """Epochs run and the one kept; epoch 0 is the weights the step started from."""
    if not run_:
        return "none"
    kept = "kept the starting weights" if run_["best_epoch"] == 0 else f"best {run_['best_epoch']}"
    return f"{run_['epochs_run']} epochs ({kept})"
