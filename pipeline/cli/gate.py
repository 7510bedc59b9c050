"""`edgepipe gate`, and the verdict of a job's own gate stage after `edgepipe run`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgepipe.pipeline.cli.show import console


def gate(
    report: Path = typer.Argument(..., help="A run directory, its manifest.json, or a batch summary."),
    budgets: Path = typer.Option(..., "--budgets", help="budgets.toml: limits per model, variant and device."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="An older report to compare with (noise-aware)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML: one test case per check."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary for a CI job page."),
    strict: bool = typer.Option(False, "--strict", help="A budget that selects nothing is an error, not a warning."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Apply budgets to a report: exit 0 when every check passes, 1 when one fails, 2 for bad input."""
    from edgepipe.pipeline.gate.output import print_verdict, run_gate, write_outputs

    verdict = run_gate(report, budgets, baseline, strict)
    write_outputs(verdict, junit, markdown)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict()))
    else:
        print_verdict(console, verdict)
    if not verdict.passed:
        raise typer.Exit(1)


def report_gate(record: dict, run_dir: Path, as_json: bool) -> None:
    """The job's gate verdict on the console; every failed check named, and exit 1 when one failed."""
    from edgepipe.pipeline.gate.checks import Check
    from edgepipe.pipeline.gate.output import Verdict, failure_lines

    verdict = Verdict([Check(**c) for c in record["checks"]], record["warnings"])
    where = run_dir / record["markdown"]
    if verdict.passed:
        if not as_json:
            console.print(f"gate passed: {verdict.counts}; see {where}")
        return
    lines = [f"edgepipe: gate failed: {verdict.counts}; see {where}", *(f"  {x}" for x in failure_lines(verdict))]
    print("\n".join(lines), file=sys.stderr)
    raise typer.Exit(1)
