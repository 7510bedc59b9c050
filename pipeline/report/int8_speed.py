"""report.md: where a quantized file runs slower than float32 on a measured target, and which op types make it
so; and what int8_fast kept in float32 to be fast there."""

from __future__ import annotations

from edgepipe.exporters.quantize import VARIANTS
from edgepipe.exporters.tflite import by_builtin_op
from edgepipe.pipeline.report.figures import figure

SHOWN_OPS = 4  # op types named per slow file, the most slowed first


def int8_speed_lines(results: dict) -> list[str]:
    """The 'int8 against float32' section; nothing when no quantized file is slower and no int8_fast was made."""
    artifacts = [a for a in results["export"]["artifacts"] if a["format"] == "tflite"]
    lines = [line for target, timed in _timed(results) for line in _slower(target, timed)]
    fast = next((a["fast_choice"] for a in artifacts if a.get("fast_choice")), None)
    if fast:
        lines.append(_fast_line(fast))
    if not lines:
        return []
    return ["## int8 against float32", "", *lines, ""]


def _timed(results: dict) -> list[tuple[str, dict]]:
    """[(target, {variant: (ms, [(op event, ms)] or the reason there is none)})]: the host, then each phone."""
    profile = results.get("profile", {})
    host = {
        r["variant"]: (r["latency_ms"]["p50"], _ops(r.get("op_profile"), "ops", "op_type", "total_ms"))
        for r in profile.get("results", [])
        if r.get("format") == "tflite"
    }
    targets = [("this host (p50)", host)] if host else []
    phones: dict[str, dict] = {}
    for r in profile.get("device_results", []):
        if r.get("status") == "ok" and r.get("format") == "tflite":
            ops = _ops(r.get("op_profile"), "summary_by_node_type", "node_type", "avg_ms")
            phones.setdefault(f"phone {r['serial']} (median)", {})[r["variant"]] = (r["latency_ms"]["p50"], ops)
    return targets + list(phones.items())


def _ops(profile: dict | None, table: str, name: str, ms: str) -> list[tuple[str, float]] | str:
    if not profile:
        return "no op profile was taken"
    if profile.get("status") != "measured":
        return f"no op profile: {profile.get('reason')}"
    return [(row[name], row[ms] or 0.0) for row in profile[table]]


def _slower(target: str, timed: dict) -> list[str]:
    """A line per quantized file slower than the float32 file on target, with the op types that make it so."""
    if "fp32" not in timed or timed["fp32"][0] is None:
        return []
    fp32_ms, fp32_ops = timed["fp32"]
    lines = []
    for variant, (ms, ops) in timed.items():
        if VARIANTS.get(variant) is None or VARIANTS[variant].numerics != "quantized" or ms is None or ms <= fp32_ms:
            continue
        lines.append(
            f"- tflite:{variant} runs {ms / fp32_ms:.2f}x tflite:fp32 on {target}: {figure(ms)} ms against "
            f"{figure(fp32_ms)} ms. {_why(ops, fp32_ops)}"
        )
    return lines


def _why(ops, fp32_ops) -> str:
    """The op types that take longest over their float32 time, from both files' op profiles."""
    for profile in (ops, fp32_ops):
        if isinstance(profile, str):
            return f"Which ops cannot be told: {profile}."
    quantized, _ = by_builtin_op(ops)
    floating, _ = by_builtin_op(fp32_ops)
    excess = sorted(((quantized[op] - floating.get(op, 0.0), op) for op in quantized), reverse=True)
    slowed = [f"{op} +{figure(ms)} ms" for ms, op in excess[:SHOWN_OPS] if ms > 0]
    if not slowed:
        return "No op type is slower on its own; the quantize and dequantize steps between ops add the time."
    return (
        f"Op types slower than in float32 (op profiles of both files): {', '.join(slowed)}; the variant "
        "int8_fast keeps such op types in float32."
    )


def _fast_line(fast: dict) -> str:
    kept = ", ".join(fast["float_ops"]) or "no op type"
    verdict = (
        "still slower than float32 there"
        if fast["slower_than_fp32"]
        else "faster than float32 there"
        if fast["vs_fp32"] < 1
        else "level with float32 there"
    )
    floor = "" if fast["met"] else f"; it misses the SQNR goal of {fast['goal_sqnr_db']:.1f} dB on its search samples"
    return (
        f"- int8_fast, timed on {fast['target']}: the all-int8 file ran {fast['all_int8_vs_fp32']:.2f}x the float32 "
        f"file; keeping {kept} in float32 it runs {fast['vs_fp32']:.2f}x, {verdict}{floor} "
        f"({len(fast['steps'])} files timed; {fast['method']})."
    )
