"""What several commands print: stage lines as a job runs, metric columns and the latency table."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console

from edgepipe.pipeline.core.console import keyed_table

console = Console()


def stage_printer(progress):
    """Prints each stage's line as it ends, clearing the live progress line first."""

    def print_stage(name: str, record: dict) -> None:
        progress.pause()
        state = "cached" if record["cached"] else f"done in {record['seconds']:.1f}s"
        console.print(f"[bold]{name:<9}[/bold] {state}")

    return print_stage


def metric_columns(metrics: list[dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    """One column per metric name (so a number never shares a cell with its name); '-' where one is missing."""
    names = list(dict.fromkeys(name for values in metrics for name in values))
    return names, [[f"{values[n]:.4f}" if n in values else "-" for n in names] for values in metrics]


def latency_table(results: list[dict]) -> None:
    """Latency percentiles, throughput, memory and (when any was measured) energy, one row per profile."""
    rows = []
    for r in results:
        lat, energy = r["latency_ms"], r["energy"]
        rows.append(
            (
                r["runtime"],
                Path(r["artifact"]).name,
                f"{lat['p50']:.4f}",
                f"{lat['p90']:.4f}",
                f"{lat['p99']:.4f}",
                str(lat["n"]),
                f"{r['throughput_ips']:.0f}",
                f"{r['memory']['peak_rss_mb']:.0f}",
                f"{energy['mj_per_inference']:.4f} mJ" if energy["status"] == "measured" else "n/a",
            )
        )
    headers = ("runtime", "artifact", "p50 ms", "p90 ms", "p99 ms", "n", "inf/s", "RSS MB", "energy")
    if all(r["energy"]["status"] != "measured" for r in results):  # said once, below the table
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    table = keyed_table(headers, rows, keys=2, box=box.SIMPLE_HEAD)
    console.print(table)
