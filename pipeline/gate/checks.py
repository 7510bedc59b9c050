"""The gate: every budget applied to every artifact it selects, and a baseline compared with noise in mind.

One subject (subjects.py) is one artifact on one device; a budget's limits become checks with the
measured value, the limit and a status: pass, fail, or "not measured" (which fails, except for
energy unless it is required).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.gate.budgets import Budget, Budgets, Relative, Tolerances
from edgepipe.pipeline.gate.subjects import Subject, report_file

PASS, FAIL, NOT_MEASURED = "pass", "fail", "not measured"


@dataclass(frozen=True)
class GateWarning:
    """Something the gate could not judge; `kind` says what, so --strict decides by kind, not by wording."""

    kind: str  # SELECTS_NOTHING or BASELINE_LACKS
    text: str

    def __str__(self) -> str:
        return self.text


SELECTS_NOTHING = "selects_nothing"  # a budget that matches no artifact of the report
BASELINE_LACKS = "baseline_lacks"  # the baseline has an artifact this report lacks


@dataclass(frozen=True)
class Check:
    """One limit on one subject, with the figures that decided it."""

    budget: str
    subject: str
    check: str
    value: float | None
    limit: float | None
    unit: str
    status: str
    detail: str = ""
    shown_unit: str = ""  # the unit the limit was written in ("400 MB"); value and limit are in `unit`

    def to_dict(self) -> dict:
        return asdict(self)


def batch_failures(report: Path) -> list[Check]:
    """A failing check for every job a batch did not finish: an artifact that was never built misses every budget."""
    path = report_file(report)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [Check("batch", str(path), "report readable", None, None, "", FAIL, f"cannot read {path}: {exc}")]
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        return []
    return [
        Check(
            "batch",
            f"{run['job']} @batch",
            "job finished",
            None,
            None,
            "",
            FAIL,
            run.get("error") or f"status {run['status']}",
        )
        for run in data["runs"]
        if run.get("status") not in ("done", "cached")
    ]


def apply_budgets(budgets: Budgets, subjects: list[Subject]) -> tuple[list[Check], list[GateWarning]]:
    """Checks of every budget on every subject it selects, and warnings for budgets that select none."""
    checks, warnings = [], []
    for budget in budgets.budgets:
        chosen = [
            s
            for s in subjects
            if budget.selects(s.model, s.format, s.variant, s.device)
            or budget.selects(s.job, s.format, s.variant, s.device)
        ]
        if not chosen:
            text = (
                f"budget '{budget.name}' selects nothing (model {budget.model}, format {budget.format}, "
                f"variant {budget.variant}, device {budget.device}); the report has "
                + ", ".join(sorted({s.label for s in subjects}))
            )
            warnings.append(GateWarning(SELECTS_NOTHING, text))
        for subject in chosen:
            checks += budget_checks(budget, subject, subjects)
    return checks, warnings


def budget_checks(b: Budget, s: Subject, everyone: list[Subject]) -> list[Check]:
    """Every limit of one budget on one subject."""

    def upper(name: str, value, limit, unit: str, detail: str = "") -> Check:
        shown = b.written_units.get(name, "")
        if value is None:
            return Check(
                b.name, s.label, name, None, limit, unit, NOT_MEASURED, detail or "no figure in the report", shown
            )
        return Check(b.name, s.label, name, value, limit, unit, PASS if value <= limit else FAIL, detail, shown)

    def lower(name: str, value, limit, unit: str) -> Check:
        if value is None:
            return Check(b.name, s.label, name, None, limit, unit, NOT_MEASURED, "no figure in the report")
        return Check(b.name, s.label, name, value, limit, unit, PASS if value >= limit else FAIL)

    checks = []
    if b.max_size_bytes is not None:
        checks.append(upper("max_size", s.size_bytes, b.max_size_bytes, "bytes"))
    for pct, limit in b.latency_ms.items():
        if isinstance(limit, Relative):
            checks.append(relative_check(b, s, pct, limit, everyone))
        else:
            checks.append(
                upper(
                    f"max_{pct}",
                    (s.latency or {}).get(pct),
                    limit,
                    "ms",
                    "" if s.latency else "not profiled on this device",
                )
            )
    if b.max_peak_memory_mb is not None:
        checks.append(upper("max_peak_memory", s.peak_memory_mb, b.max_peak_memory_mb, "MiB"))
    for metric, limit in b.min_metric.items():
        checks.append(lower(f"min_metric.{metric}", s.metrics.get(metric), limit, _metric_unit(metric)))
    for metric, limit in b.max_metric_drop.items():
        now, base = s.metrics.get(metric), s.fp32_metrics.get(metric)
        checks.append(
            upper(
                f"max_metric_drop.{metric}",
                None if now is None or base is None else (now - base if metric in s.lower_is_better else base - now),
                limit,
                _metric_unit(metric),
                f"vs {s.format}:fp32 ({base})" if base is not None else f"no {metric} for {s.format}:fp32",
            )
        )
    if b.max_error is not None:
        checks.append(upper("max_error", s.max_error, b.max_error, "abs"))
    if b.min_sqnr_db is not None:
        checks.append(lower("min_sqnr_db", s.sqnr_db, b.min_sqnr_db, "dB"))
    if b.min_inferences_per_joule is not None or b.require_energy:
        checks.append(energy_check(b, s))
    return checks


def energy_check(b: Budget, s: Subject) -> Check:
    """Inferences per joule; an unmeasured figure fails only when the budget requires energy."""
    energy = s.energy or {"status": "unavailable", "reason": "not profiled on this device"}
    limit = b.min_inferences_per_joule
    if energy.get("status") != "measured":
        status = FAIL if b.require_energy else NOT_MEASURED
        return Check(
            b.name,
            s.label,
            "min_inferences_per_joule",
            None,
            limit,
            "inf/J",
            status,
            f"energy not measured: {energy.get('reason')}",
        )
    value = energy["inferences_per_joule"]
    ok = limit is None or value >= limit
    return Check(
        b.name,
        s.label,
        "min_inferences_per_joule",
        value,
        limit,
        "inf/J",
        PASS if ok else FAIL,
        f"{energy['mj_per_inference']:.4g} mJ/inference from {energy['source']}",
    )


def relative_check(b: Budget, s: Subject, pct: str, limit: Relative, everyone: list[Subject]) -> Check:
    """target / reference latency at most limit.ratio; fails only when the ratio's 95 % CI lies above it.

    Paired figures (both models timed interleaved in one process) are used when the profile has
    them; otherwise the two independent profiles' bootstrap CIs bound the ratio conservatively.
    """
    name = f"max_{pct} ({limit.ratio:g}x {limit.of})"
    paired = s.paired.get(limit.of)
    if paired and f"{pct}_ratio" in paired:
        ratio, (lo, hi) = paired[f"{pct}_ratio"], paired[f"{pct}_ratio_ci95"]
        status = FAIL if lo > limit.ratio else PASS
        return Check(
            b.name,
            s.label,
            name,
            ratio,
            limit.ratio,
            "x",
            status,
            f"paired, interleaved in one process: 95 % CI {lo:.3f}-{hi:.3f}",
        )
    ref = next((o for o in everyone if o.key == limit.of and o.device == s.device and o.job == s.job), None)
    if ref is None or not ref.latency or not s.latency:
        missing = limit.of if ref is None or not ref.latency else s.key
        return Check(
            b.name,
            s.label,
            name,
            None,
            limit.ratio,
            "x",
            NOT_MEASURED,
            f"{missing} has no {pct} on {s.device} in this run",
        )
    ratio = s.latency[pct] / ref.latency[pct]
    ci_s, ci_r = (x.latency.get("ci95", {}).get(pct) for x in (s, ref))
    lo, hi = (ci_s[0] / ci_r[1], ci_s[1] / ci_r[0]) if ci_s and ci_r else (ratio, ratio)
    return Check(
        b.name,
        s.label,
        name,
        ratio,
        limit.ratio,
        "x",
        FAIL if lo > limit.ratio else PASS,
        f"unpaired ({s.latency[pct]:.4g} / {ref.latency[pct]:.4g} ms), ratio bounds {lo:.3f}-{hi:.3f}",
    )


def baseline_checks(new: list[Subject], old: list[Subject], tol: Tolerances) -> tuple[list[Check], list[str]]:
    """Regressions against a stored report: latency by confidence interval, size and metrics exactly."""
    before = {(s.job, s.key, s.device): s for s in old}
    checks, warnings = [], []
    for s in new:
        o = before.pop((s.job, s.key, s.device), None)
        if o is None:
            continue
        if s.size_bytes is not None and o.size_bytes is not None:
            limit = o.size_bytes * (1 + tol.size)
            checks.append(
                Check(
                    "baseline",
                    s.label,
                    "size vs baseline",
                    s.size_bytes,
                    limit,
                    "bytes",
                    PASS if s.size_bytes <= limit else FAIL,
                    f"baseline {o.size_bytes} bytes",
                )
            )
        if s.latency and o.latency:
            limit = o.latency["p90"] * (1 + tol.latency)
            lo, hi = s.latency.get("ci95", {}).get("p90") or (s.latency["p90"], s.latency["p90"])
            checks.append(
                Check(
                    "baseline",
                    s.label,
                    "p90 vs baseline",
                    s.latency["p90"],
                    limit,
                    "ms",
                    FAIL if lo > limit else PASS,
                    f"baseline p90 {o.latency['p90']:.4g} ms; new 95 % CI {lo:.4g}-{hi:.4g} ms",
                )
            )
        for metric, old_value in o.metrics.items():
            if metric in s.metrics:
                limit = old_value - tol.metric
                checks.append(
                    Check(
                        "baseline",
                        s.label,
                        f"{metric} vs baseline",
                        s.metrics[metric],
                        limit,
                        _metric_unit(metric),
                        PASS if s.metrics[metric] >= limit else FAIL,
                        f"baseline {old_value:.6g}",
                    )
                )
    warnings += [
        GateWarning(BASELINE_LACKS, f"baseline has {' '.join(k[1:])} of job {k[0]}, which this report lacks")
        for k in before
    ]
    return checks, warnings


def check_metrics_exist(budgets: Budgets, subjects: list[Subject]) -> None:
    """A budget on a metric the report never measured is a typo or a wrong model: bad input."""
    have = {m for s in subjects for m in s.metrics}
    for b in budgets.budgets:
        for metric in {*b.min_metric, *b.max_metric_drop} - have:
            raise ConfigError(
                f"budget '{b.name}': metric {metric!r} is not in this report (it has "
                f"{', '.join(sorted(have)) or 'no task metrics'})"
            )


def _metric_unit(metric: str) -> str:
    return "dB" if metric.endswith("_db") else ""
