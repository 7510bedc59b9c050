"""The compression section of report.md: what distillation and pruning did, in measured figures."""

from __future__ import annotations

from edgepipe.pipeline.report.figures import figure


def compress_lines(compress: dict, fp32_tflite_bytes: int | None) -> list[str]:
    """Markdown lines for the [compress] steps; none when the job compressed nothing."""
    if not compress.get("steps"):
        return []
    trained, final = compress["trained"], compress["compressed"]
    lines = [
        "## Compression",
        "",
        "| step | parameters | sparsity | held-out metrics | fine-tune / training |",
        "|---|---:|---:|---|---|",
        f"| trained model | {trained['parameters']:,} | {trained['sparsity']:.1%} | {_metrics(trained['metrics'])} | |",
    ]
    for step in compress["steps"]:
        run = step.get("train") or step.get("finetune")
        training = f"{run['epochs_run']} epochs (best {run['best_epoch']})" if run else "none"
        lines.append(
            f"| {_describe(step)} | {step['parameters']:,} | {step['sparsity']:.1%} | "
            f"{_metrics(step['metrics'])} | {training} |"
        )
    lines += [
        "",
        f"Result: {final['parameters']:,} parameters ({final['parameters'] / trained['parameters']:.2f}x the "
        f"trained model), {_metrics(final['metrics'])}.",
        "",
    ]
    if any(s["step"] == "prune_magnitude" for s in compress["steps"]):
        lines += [
            f"Magnitude pruning sets weights to zero but keeps every tensor's shape: TFLite and ONNX store "
            f"tensors densely, so the exported files are as large as the unpruned model's and dense kernels "
            f"do the same arithmetic "
            f"(fp32 TFLite: {figure(fp32_tflite_bytes, ',', ' bytes')}). The zeros only pay off with a "
            "general-purpose compressor on the download, or a sparse-aware runtime; channel pruning "
            '(`prune = "channels"`) shrinks the files and the work instead.',
            "",
        ]
    return lines


def _describe(step: dict) -> str:
    if step["step"] == "distill":
        return f"distilled into student ({step['student']}, T={step['temperature']:g}, alpha={step['alpha']:g})"
    if step["step"] == "prune_channels":
        removed = sum(c["channels"] - c["kept"] for c in step["channels"])
        total = sum(c["channels"] for c in step["channels"])
        return (
            f"channel pruning {step['amount']:.0%}: {removed} of {total} channels removed "
            f"in {len(step['channels'])} groups"
        )
    if step["step"] == "qat":
        return "quantization-aware fine-tune (int8 weights per channel, int8 activations per tensor)"
    return f"magnitude pruning {step['amount']:.0%} (global, unstructured)"


def _metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
