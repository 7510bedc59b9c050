"""Relative latency budgets: the same artifact against itself passes every time; a slower one fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgepipe.pipeline.gate.budgets import Budget, Relative
from edgepipe.pipeline.gate.checks import FAIL, PASS, relative_check
from edgepipe.pipeline.gate.subjects import Subject
from edgepipe.profilers.calibration import matmul_chain
from edgepipe.profilers.isolation import in_child
from edgepipe.profilers.paired import paired_ratio
from tests.profilers.test_paired import DEPTH, FEEDS, ROWS, WIDTH

BUDGET = Budget("int8 at most 1.15x fp32", latency_ms={"p90": Relative(1.15, "onnx:fp32")})
SUBJECT = Subject("job", "m", "onnx", "int8", "host", 1, None, None, {}, {}, None, None, None)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("relative")
    return {
        "base": matmul_chain(work / "base.onnx", DEPTH, (ROWS, WIDTH)),
        "slow": matmul_chain(work / "slow.onnx", 2 * DEPTH, (ROWS, WIDTH)),
    }


def paired(target: Path, reference: Path) -> dict:
    sides = ("onnxruntime", target, FEEDS), ("onnxruntime", reference, FEEDS)
    return in_child(paired_ratio, *sides, blocks=20, warmup_seconds=0.3).to_dict()


@pytest.mark.slow
def test_the_same_artifact_paired_with_itself_never_flaps(models):
    verdicts = []
    for _ in range(5):  # five fresh processes, each timing the pair interleaved
        subject = replace(SUBJECT, paired={"onnx:fp32": paired(models["base"], models["base"])})
        verdicts.append(relative_check(BUDGET, subject, "p90", BUDGET.latency_ms["p90"], []))
    assert [c.status for c in verdicts] == [PASS] * 5, [(c.value, c.detail) for c in verdicts]
    assert all(c.detail.startswith("paired") for c in verdicts)


@pytest.mark.slow
def test_twice_the_work_fails(models):
    subject = replace(SUBJECT, paired={"onnx:fp32": paired(models["slow"], models["base"])})
    check = relative_check(BUDGET, subject, "p90", BUDGET.latency_ms["p90"], [])
    assert check.status == FAIL and check.value > 1.5


def test_without_pairs_the_independent_intervals_decide():
    ref = replace(SUBJECT, variant="fp32", latency={"p90": 1.0, "ci95": {"p90": [0.95, 1.05]}})
    close = replace(SUBJECT, latency={"p90": 1.2, "ci95": {"p90": [1.05, 1.30]}})  # above 1.15 but within noise
    far = replace(SUBJECT, latency={"p90": 1.5, "ci95": {"p90": [1.45, 1.55]}})
    budget = BUDGET.latency_ms["p90"]
    assert relative_check(BUDGET, close, "p90", budget, [ref, close]).status == PASS
    assert relative_check(BUDGET, far, "p90", budget, [ref, far]).status == FAIL
    missing = relative_check(BUDGET, far, "p90", budget, [far])
    assert missing.status == "not measured" and "onnx:fp32 has no p90" in missing.detail
