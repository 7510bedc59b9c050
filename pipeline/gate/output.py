"""The gate's verdict as a terminal table, JUnit XML (one test case per check), Markdown and JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.core.console import keyed_table
from edgepipe.pipeline.core.store import write_atomic
from edgepipe.pipeline.gate.budgets import MEMORY_UNITS, SIZE_UNITS, TIME_UNITS, Budgets, load_budgets
from edgepipe.pipeline.gate.checks import (
    FAIL,
    NOT_MEASURED,
    PASS,
    SELECTS_NOTHING,
    Check,
    GateWarning,
    apply_budgets,
    baseline_checks,
    batch_failures,
    check_metrics_exist,
)
from edgepipe.pipeline.gate.subjects import Subject, load_subjects


@dataclass(frozen=True)
class Verdict:
    """Every check and warning of one gate run."""

    checks: list[Check]
    warnings: list[GateWarning]

    @property
    def passed(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def counts(self) -> str:
        """'8 checks: 6 passed, 1 failed, 1 not measured'."""
        return (
            f"{len(self.checks)} checks: {self.count(PASS)} passed, {self.count(FAIL)} failed, "
            f"{self.count(NOT_MEASURED)} not measured"
        )

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "failed": self.count(FAIL),
            "not_measured": self.count(NOT_MEASURED),
            "checks": [c.to_dict() for c in self.checks],
            "warnings": [str(w) for w in self.warnings],
        }


def run_gate(report: Path, budgets: Path, baseline: Path | None = None, strict: bool = False) -> Verdict:
    """Apply a budgets file (and a baseline) to a report; bad budgets or reports raise with exit code 2."""
    verdict = verdict_for(
        load_subjects(report), load_budgets(budgets), load_subjects(baseline) if baseline is not None else None, strict
    )
    return Verdict(batch_failures(report) + verdict.checks, verdict.warnings)


def verdict_for(subjects: list[Subject], budgets: Budgets, baseline: list[Subject] | None, strict: bool) -> Verdict:
    """Every budget's checks and the baseline's, with the warnings.

    Strict (--strict, or `strict = true` in the budgets): a budget that selects nothing is bad input,
    and a check that could not be measured fails.
    """
    check_metrics_exist(budgets, subjects)
    checks, warnings = apply_budgets(budgets, subjects)
    if baseline is not None:
        more, notes = baseline_checks(subjects, baseline, budgets.tolerances)
        checks, warnings = checks + more, warnings + notes
    if strict or budgets.strict:
        unselected = [w for w in warnings if w.kind == SELECTS_NOTHING]
        if unselected:
            raise ConfigError(f"{unselected[0]} (an error with --strict)")
        checks = [
            replace(c, status=FAIL, detail=f"not measured, a failure with --strict: {c.detail}")
            if c.status == NOT_MEASURED
            else c
            for c in checks
        ]
    return Verdict(checks, warnings)


def print_verdict(console: Console, verdict: Verdict) -> None:
    """One table per budget (every check on every artifact it selects), then the warnings and the verdict."""
    jobs = {c.subject.split(" ")[0] for c in verdict.checks}
    for budget in dict.fromkeys(c.budget for c in verdict.checks):
        rows = []
        for c in (c for c in verdict.checks if c.budget == budget):
            style = {PASS: "green", FAIL: "bold red"}.get(c.status, "yellow")
            subject = c.subject if len(jobs) > 1 else c.subject.split(" ", 1)[1]
            rows.append((subject, c.check, _figure(c, c.value), _figure(c, c.limit), f"[{style}]{c.status}[/{style}]"))
        headers = ("artifact", "check", "value", "limit", "status")
        table = keyed_table(headers, rows, keys=2, title=budget, title_justify="left")
        console.print(table)
    for warning in verdict.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for c in verdict.checks:
        if c.status == NOT_MEASURED:
            console.print(f"[yellow]not measured:[/yellow] {c.subject}: {c.check} ({c.detail}); --strict fails it")
    console.print(f"gate {'passed' if verdict.passed else 'FAILED'}: {verdict.counts}")


def junit_xml(verdict: Verdict) -> str:
    """JUnit XML: one test case per check; a failure's message carries the figures."""
    failures = sum(c.status == FAIL for c in verdict.checks)
    suite = ET.Element(
        "testsuite",
        name="edgepipe gate",
        tests=str(len(verdict.checks)),
        failures=str(failures),
        errors="0",
        skipped=str(sum(c.status not in (PASS, FAIL) for c in verdict.checks)),
    )
    for c in verdict.checks:
        case = ET.SubElement(suite, "testcase", classname=c.subject, name=f"{c.budget}: {c.check}")
        if c.status == FAIL:
            failure = ET.SubElement(case, "failure", message=_sentence(c), type="budget")
            failure.text = c.detail
        elif c.status != PASS:
            ET.SubElement(case, "skipped", message=f"{c.status}: {c.detail}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def markdown(verdict: Verdict) -> str:
    """A summary for a CI job page: the verdict, the failures first, then every check."""
    failed = [c for c in verdict.checks if c.status == FAIL]
    lines = [f"## edgepipe gate: {'passed' if verdict.passed else 'FAILED'}", "", f"{verdict.counts}.", ""]
    if failed:
        lines += ["### Failed", "", *[f"- {_sentence(c)}" for c in failed], ""]
    lines += ["| budget | artifact | check | value | limit | status |", "|---|---|---|---:|---:|---|"]
    lines += [
        f"| {c.budget} | {c.subject} | {c.check} | {_figure(c, c.value)} | {_figure(c, c.limit)} | {c.status} |"
        for c in verdict.checks
    ]
    lines += ["", *[f"> warning: {w}" for w in verdict.warnings]]
    return "\n".join(lines) + "\n"


def write_outputs(verdict: Verdict, junit: Path | None, summary: Path | None) -> None:
    """The JUnit and Markdown files, each written whole."""
    if junit is not None:
        write_atomic(junit, junit_xml(verdict))
    if summary is not None:
        write_atomic(summary, markdown(verdict))


def failure_lines(verdict: Verdict) -> list[str]:
    """One sentence per failed check."""
    return [_sentence(c) for c in verdict.checks if c.status == FAIL]


def _sentence(c: Check) -> str:
    detail = f" ({c.detail})" if c.detail else ""
    return f"{c.subject}: {c.check} is {_figure(c, c.value)}, limit {_figure(c, c.limit)} [{c.budget}]{detail}"


# A check's unit -> the table of the units a budget may write it in (each: base units per written unit).
_WRITTEN = {"bytes": SIZE_UNITS, "MiB": MEMORY_UNITS, "ms": TIME_UNITS}


def _figure(c: Check, value) -> str:
    """A figure in the unit the budget was written in: '262.1 MB' for a limit of '400 MB'."""
    if value is None:
        return "-"
    shown = c.shown_unit or {"bytes": "B"}.get(c.unit, c.unit)
    if c.unit in _WRITTEN and shown in _WRITTEN[c.unit]:
        value = value / _WRITTEN[c.unit][shown]
    if shown == "B":
        return f"{value:,.0f} B"
    return f"{value:.4g} {shown}".strip()
