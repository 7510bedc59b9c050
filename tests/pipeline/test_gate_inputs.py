"""What the gate does with a report it cannot read."""

from __future__ import annotations

from edgepipe.pipeline.gate.checks import FAIL, batch_failures


def test_an_unreadable_batch_report_fails_the_gate(tmp_path):
    (tmp_path / "batch.json").write_text("{not json")
    checks = batch_failures(tmp_path)
    assert [(c.check, c.status) for c in checks] == [("report readable", FAIL)]
    assert "cannot read" in checks[0].detail and "batch.json" in checks[0].detail
