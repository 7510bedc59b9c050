"""summary.csv and summary.md of a batch: one row per artifact of every job (one per failed job)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgepipe.pipeline.core.run_view import RunView
from edgepipe.pipeline.core.store import MANIFEST, write_atomic
from edgepipe.pipeline.report.figures import figure

COLUMNS = (
    "job",
    "model",
    "status",
    "seconds",
    "stages_cached",
    "format",
    "variant",
    "size_bytes",
    "max_abs",
    "sqnr_db",
    "ok",
    "metrics",
    "error",
)


def job_rows(outcome: dict, out: Path) -> list[dict]:
    """A job's artifacts with size, ledger and metrics from its run manifest."""
    base = {
        "job": outcome["job"],
        "model": outcome["model"],
        "status": outcome["status"],
        "seconds": round(outcome.get("seconds", 0.0), 2),
        "stages_cached": " ".join(outcome.get("stages_cached", [])),
        "error": outcome.get("error", ""),
    }
    run_dir = out / outcome["run_dir"]
    if outcome["status"] == "failed" or not (run_dir / MANIFEST).is_file():
        return [base]
    run = RunView.read(run_dir)
    rows = []
    for art in run.artifacts:
        ledger = run.ledger(art.key)
        rows.append(
            {
                **base,
                "format": art.format,
                "variant": art.variant,
                "size_bytes": art.size_bytes,
                "max_abs": ledger.get("max_abs"),
                "sqnr_db": ledger.get("sqnr_db"),
                "ok": ledger.get("ok"),
                "metrics": " ".join(f"{k}={v:.4f}" for k, v in run.metrics(art.key).items()),
            }
        )
    return rows or [base]


def write_summaries(out: Path, rows: list[dict]) -> None:
    """summary.csv (every column) and summary.md (a table, failures first with their reasons)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "summary.csv", buffer.getvalue())
    jobs = {r["job"]: r for r in rows}
    failed = [r for r in jobs.values() if r["status"] == "failed"]
    lines = [
        "# edgepipe batch",
        "",
        f"{len(jobs)} jobs: {sum(r['status'] == 'done' for r in jobs.values())} run, "
        f"{sum(r['status'] == 'cached' for r in jobs.values())} from the cache, {len(failed)} failed.",
        "",
    ]
    if failed:
        lines += ["## Failed", "", *[f"- `{r['job']}` ({r['model']}): {r['error']}" for r in failed], ""]
    lines += [
        "| job | status | s | format | variant | size (bytes) | max abs err | SQNR dB | ok | metrics |",
        "|---|---|---:|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['job']} | {r['status']} | {r['seconds']} | {r.get('format', '')} | {r.get('variant', '')} | "
            f"{figure(r.get('size_bytes'), ',', absent='')} | {figure(r.get('max_abs'), '.2e', absent='')} | "
            f"{figure(r.get('sqnr_db'), '.1f', absent='')} | "
            f"{'' if r.get('ok') is None else r['ok']} | {r.get('metrics', '')} |"
        )
    write_atomic(out / "summary.md", "\n".join(lines) + "\n")
