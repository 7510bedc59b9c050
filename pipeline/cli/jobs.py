"""`edgepipe run` (one job's whole chain) and `edgepipe batch` (many jobs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgepipe.pipeline.cli.gate import report_gate
from edgepipe.pipeline.cli.show import console, latency_table, metric_columns, stage_printer
from edgepipe.pipeline.core.console import keyed_table, progress_shown
from edgepipe.pipeline.core.run_view import RunView


def run(
    config: Optional[Path] = typer.Argument(None, help="Job TOML; the embedded default job when omitted."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Run directory (default runs/<job>-<hash8>)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the job's TOML and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's results as JSON."),
) -> None:
    """Run the whole chain for one job: train, export, validate, profile, report."""
    from edgepipe.pipeline.core.config import default_job_text, load_job
    from edgepipe.pipeline.core.runner import default_run_dir, run_job

    job = load_job(config)
    if print_config:
        typer.echo(default_job_text() if config is None else config.read_text(), nl=False)
        return
    with progress_shown() as progress:
        result = run_job(job, out or default_run_dir(job), on_stage=None if as_json else stage_printer(progress))
    if as_json:
        typer.echo(json.dumps({"job": job.job.name, "run_dir": str(result.run_dir), "results": result.results}))
    else:
        _print_summary(result)
    if "gate" in result.results:
        report_gate(result.results["gate"], result.run_dir, as_json)


def batch(
    jobs: Path = typer.Argument(..., help="JOBS.toml: a matrix of models x variants x export settings."),
    out: Path = typer.Option(Path("runs/batch"), "-o", "--out", help="Batch directory (runs, batch.json, summaries)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Warm worker processes (default: the core count)."),
    executor: str = typer.Option("local", "--executor", help="local (warm worker processes) or ray."),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray: the cluster address (default: start a local one)."
    ),
    force: bool = typer.Option(False, "--force", help="Ignore the cache: run every stage of every job again."),
    as_json: bool = typer.Option(False, "--json", help="Print batch.json instead of progress and a table."),
) -> None:
    """Run many jobs: cached, resumable after a crash; exit 1 when any job failed."""
    import os

    from edgepipe.models.shared.errors import ConfigError
    from edgepipe.pipeline.batch.run import BATCH_MANIFEST, run_batch
    from edgepipe.pipeline.batch.view import BatchProgress

    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor {executor!r}: expected local or ray")
    with BatchProgress(console, quiet=as_json) as progress:
        result = run_batch(jobs, out, workers or os.cpu_count() or 1, executor, force, address, progress.event)
    if as_json:
        typer.echo((result.out / BATCH_MANIFEST).read_text())
    else:
        progress.finish(result)
    if result.failed:
        raise typer.Exit(1)


def _print_summary(result) -> None:
    run = RunView.read(result.run_dir)
    names, metric_cells = metric_columns([run.metrics(art.key) for art in run.artifacts])
    rows = []
    for art, cells in zip(run.artifacts, metric_cells):
        led = run.ledger(art.key)
        rows.append(
            (
                art.path,
                *cells,
                f"{led.get('max_abs', 0):.2e}",
                f"{led.get('cosine', 1):.6f}",
                str(led.get("ok", "-")),
            )
        )
    header = ("artifact", *names, "max abs err", "cosine", "ok")
    table = keyed_table(header, rows, title=f"run {result.run_dir}")
    console.print(table)
    profiles = run.result("profile").get("results", [])
    latency_table(profiles)
    cached = [n for n, r in result.stages.items() if r["cached"]]
    energy = next((r["energy"] for r in profiles), None)
    if energy and energy["status"] != "measured":
        console.print(f"energy unavailable: {energy['reason']}")
    console.print(
        f"errors vs {run.result('validate').get('reference', '?')}; stages from cache: {', '.join(cached) or 'none'}; "
        f"report: {result.run_dir / 'report.md'}"
    )
