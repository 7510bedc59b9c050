"""Host energy against a fake powercap tree whose counters advance and wrap."""
import os
from pathlib import Path

import pytest

from profilers import energy


def _zone(root: Path, zone: str, name: str, uj: int, max_range: int = 1_000_000) -> Path:
    d = root / zone
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def test_missing_tree_is_unavailable_with_reason(tmp_path):
    domains, reason = energy.package_domains(tmp_path / "nope")
    assert domains == [] and "does not exist" in reason


def test_only_package_domains_are_used(tmp_path):
    _zone(tmp_path, "intel-rapl:0", "package-0", 10)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)
    _zone(tmp_path, "intel-rapl:1", "dram", 5)
    domains, reason = energy.package_domains(tmp_path)
    assert [d.name for d in domains] == ["package-0"] and reason == ""


def test_delta_handles_wraparound(tmp_path):
    z = _zone(tmp_path, "intel-rapl:0", "package-0", 999_000)
    domains, _ = energy.package_domains(tmp_path)
    before = energy.read_uj(domains)
    (z / "energy_uj").write_text("500\n")
    assert energy.consumed_uj(domains, before, energy.read_uj(domains)) == 1_000 + 500


def test_energy_per_inference_subtracts_idle(tmp_path):
    r = energy.energy_result(total_uj=3_000_000, wall_ns=1_000_000_000, inferences=1000, idle_w=1.0, source="rapl")
    assert r["status"] == "measured" and r["avg_power_w"] == pytest.approx(3.0)
    assert r["mj_per_inference"] == pytest.approx(2.0) and r["inferences_per_joule"] == pytest.approx(500)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file; permissions cannot be tested as root")
def test_unreadable_counter_explains_the_fix(tmp_path):
    z = _zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (z / "energy_uj").chmod(0)
    domains, reason = energy.package_domains(tmp_path)
    assert domains == [] and "chmod" in reason
