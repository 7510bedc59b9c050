"""Stage gate: the job's budgets applied to this run's own figures, as its last stage."""

from __future__ import annotations

from pathlib import Path

from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.run_view import RunView
from edgepipe.pipeline.core.store import write_atomic, write_json
from edgepipe.pipeline.gate.budgets import job_budgets
from edgepipe.pipeline.gate.output import junit_xml, markdown, verdict_for
from edgepipe.pipeline.gate.subjects import load_subjects, run_subjects

GATE_JSON, GATE_MARKDOWN, GATE_JUNIT = "gate.json", "gate.md", "junit.xml"


def run_gate_stage(ctx: StageContext) -> dict:
    """Write gate.json, gate.md and junit.xml; the verdict is a result (a failed gate is still a finished stage)."""
    section = ctx.job.gate
    subjects = run_subjects(RunView.of_manifest(ctx.store.manifest, ctx.store.run_dir, ctx.results, ctx.job))
    baseline = load_subjects(Path(section.baseline)) if section.baseline else None
    verdict = verdict_for(subjects, job_budgets(section), baseline, section.strict)
    write_json(ctx.staging / GATE_JSON, verdict.to_dict())
    write_atomic(ctx.staging / GATE_MARKDOWN, markdown(verdict))
    write_atomic(ctx.staging / GATE_JUNIT, junit_xml(verdict))
    return {**verdict.to_dict(), "markdown": GATE_MARKDOWN, "junit": GATE_JUNIT}
