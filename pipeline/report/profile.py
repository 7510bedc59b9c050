"""report.md sections from the profile stage: per-op time, throughput over batch and threads, and plots."""

from __future__ import annotations

from edgepipe.pipeline.core.run_view import artifact_key

TOP_OPS = 8


def profile_lines(profile: dict) -> list[str]:
    """Markdown for per-op tables, throughput tables and profile plots; none without a profile stage."""
    results = profile.get("results", [])
    if not results:
        return []
    plots = profile.get("plots", {})
    lines = []
    if "latency" in plots:
        lines += [
            "Latency distribution of every artifact (one box per artifact, p50 and p90 marked):",
            "",
            f"![latency distribution]({plots['latency']})",
            "",
        ]
    if any("op_profile" in r for r in results):
        lines += ["## Per-op time", ""]
        for r in (r for r in results if "op_profile" in r):
            lines += _op_table(r)
    if any(r.get("paired") for r in results):
        lines += _paired_table(results)
    if any(r.get("throughput") for r in results):
        lines += [
            "## Throughput",
            "",
            "Offline mode: inferences (samples) per second, each batch one invocation; threads 1 .. the host's cores.",
            "",
        ]
        for r in results:
            lines += _throughput_table(r, plots.get(f"throughput:{artifact_key(r)}"))
    return lines


def _op_table(result: dict) -> list[str]:
    """Time by op type for one artifact, checked against the harness's own latency."""
    ops = result["op_profile"]
    title = f"`{result['artifact']}` ({result['runtime']})"
    if ops["status"] != "measured":
        return [f"{title}: per-op profile unavailable: {ops['reason']}", ""]
    mean_ms = result["latency_ms"]["mean"]
    lines = [
        f"{title}: {ops['source']}, {ops['runs']} runs. Op times add up to {ops['op_total_ms']:.4f} ms per "
        f"inference; the timing harness measured a mean of {mean_ms:.4f} ms without the profiler "
        f"(ratio {ops['op_total_ms'] / mean_ms:.2f}).",
        "",
        "| op type | count | ms per inference | share |",
        "|---|---:|---:|---:|",
    ]
    for op in ops["ops"][:TOP_OPS]:
        lines.append(f"| {op['op_type']} | {op['count']} | {op['total_ms']:.4f} | {op['share']:.1%} |")
    rest = ops["ops"][TOP_OPS:]
    if rest:
        lines.append(
            f"| {len(rest)} other op types | {sum(o['count'] for o in rest)} | "
            f"{sum(o['total_ms'] for o in rest):.4f} | {sum(o['share'] for o in rest):.1%} |"
        )
    return [*lines, ""]


def _throughput_table(result: dict, plot: str | None) -> list[str]:
    """Inferences per second by threads (rows) and batch (columns) for one artifact."""
    points = result.get("throughput", [])
    if not points:
        return []
    batches = sorted({p["batch"] for p in points})
    lines = [
        f"`{result['artifact']}` ({result['runtime']}):",
        "",
        "| threads | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---:|" + "---:|" * len(batches),
    ]
    for threads in sorted({p["threads"] for p in points}):
        cells = {p["batch"]: p for p in points if p["threads"] == threads}
        lines.append(
            f"| {threads} | "
            + " | ".join(
                f"{cells[b]['inferences_per_second']:,.0f}" if cells[b]["status"] == "measured" else "n/a"
                for b in batches
            )
            + " |"
        )
    reasons = sorted({p["reason"] for p in points if p["status"] != "measured"})
    lines += [""] + [f"n/a: {reason}" for reason in reasons] + ([""] if reasons else [])
    lines += _oversubscribed(points)
    return lines + ([f"![throughput]({plot})", ""] if plot else [])


def _oversubscribed(points: list[dict]) -> list[str]:
    """A note when more threads gave less throughput: the threads outnumbered the cores free at the time."""
    measured = [p for p in points if p["status"] == "measured"]
    worse = sorted(
        {
            p["batch"]
            for p in measured
            for q in measured
            if p["batch"] == q["batch"]
            and p["threads"] > q["threads"]
            and p["inferences_per_second"] < 0.9 * q["inferences_per_second"]
        }
    )
    if not worse:
        return []
    return [
        f"At batch {', '.join(map(str, worse))} more threads gave less throughput: the threads outnumbered the "
        "cores that were free during the measurement (other processes, or the other threads' own overhead on "
        "a model this small), so they waited on each other.",
        "",
    ]


def _paired_table(results: list[dict]) -> list[str]:
    """Latency ratios timed interleaved in one process (so machine state cancels), with block-bootstrap CIs."""
    lines = [
        "## Paired latency ratios",
        "",
        "Each artifact timed against a reference in alternating blocks (ABBA) in "
        "one process; 95 % intervals by resampling blocks.",
        "",
        "| artifact | reference | p50 ratio (95 % CI) | p90 ratio (95 % CI) |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        for ref, p in (r.get("paired") or {}).items():
            lines.append(
                f"| `{r['artifact']}` | {ref} | {p['p50_ratio']:.3f} ({p['p50_ratio_ci95'][0]:.3f}-"
                f"{p['p50_ratio_ci95'][1]:.3f}) | {p['p90_ratio']:.3f} ({p['p90_ratio_ci95'][0]:.3f}-"
                f"{p['p90_ratio_ci95'][1]:.3f}) |"
            )
    return [*lines, ""]
