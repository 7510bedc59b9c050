"""What the gate judges: one subject per artifact and device, read from a run's manifest or a batch's runs.

A run's figures come from its manifest (export, validate and profile results); a batch summary
lists its finished run directories, each read the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.models.shared.errors import InputFileError
from edgepipe.pipeline.core.run_view import RunView, artifact_key, format_variant


@dataclass(frozen=True)
class Subject:
    """One artifact on one device, with every figure a budget can look at (None: not measured)."""

    job: str
    model: str
    format: str
    variant: str
    device: str
    size_bytes: int | None
    latency: dict | None  # the profile's latency_ms (p50, p90, p99, ci95)
    peak_memory_mb: float | None
    metrics: dict[str, float]
    fp32_metrics: dict[str, float]
    max_error: float | None
    sqnr_db: float | None
    energy: dict | None
    paired: dict = field(default_factory=dict)  # reference "format:variant" -> paired ratio figures
    lower_is_better: tuple[str, ...] = ()  # metrics whose drop is a rise (the user's error metrics)

    @property
    def key(self) -> str:
        return format_variant(self.format, self.variant)

    @property
    def label(self) -> str:
        return f"{self.job} {self.key} @{self.device}"


def load_subjects(report: Path) -> list[Subject]:
    """Subjects of a run directory, its manifest.json, or a batch summary listing run directories."""
    path = report_file(report)
    if not path.is_file():
        raise InputFileError(
            f"{report} is neither a run directory nor a manifest.json or batch summary; "
            "pass the -o directory of 'edgepipe run' or 'edgepipe batch'"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path} is not JSON ({exc}); pass a run directory or its manifest.json") from None
    if isinstance(data, dict) and isinstance(data.get("runs"), list):  # a batch manifest
        return [
            s
            for run in data["runs"]
            if run.get("status") in ("done", "cached")
            for s in load_subjects(path.parent / run["run_dir"])
        ]
    return run_subjects(RunView.read(path))


def report_file(report: Path) -> Path:
    """A run directory's manifest.json, a batch directory's batch.json, or the file given."""
    if not report.is_dir():
        return report
    return report / "batch.json" if (report / "batch.json").is_file() else report / "manifest.json"


def run_subjects(run: RunView) -> list[Subject]:
    """One subject per exported artifact and device it was profiled on (or 'host', unprofiled)."""
    if "export" not in run.results:
        raise InputFileError(f"{run.root}: the run has no export results; gate a finished run")
    profiles = run.result("profile")
    by_device: dict[str, list[tuple[str, dict]]] = {}
    for r in profiles.get("results", []):
        by_device.setdefault(artifact_key(r), []).append(("host", r))
    for r in profiles.get("device_results", []):
        if r.get("status", "ok") == "ok":
            by_device.setdefault(artifact_key(r), []).append((r["serial"], r))
    job = run.job["job"]
    subjects = []
    for art in run.artifacts:
        ledger = run.ledger(art.key)
        for device, r in by_device.get(art.key) or [("host", None)]:
            subjects.append(
                Subject(
                    job["name"],
                    job["model"],
                    art.format,
                    art.variant,
                    device,
                    art.size_bytes,
                    r["latency_ms"] if r else None,
                    (r["memory"].get("peak_rss_mb") if r else None),
                    dict(run.metrics(art.key)),
                    dict(run.metrics(f"{art.format}:fp32")),
                    ledger.get("max_abs"),
                    ledger.get("sqnr_db"),
                    r["energy"] if r else None,
                    (r.get("paired") or {}) if r else {},
                    tuple(run.result("validate").get("lower_is_better", ())),
                )
            )
    return subjects
