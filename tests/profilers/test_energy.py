"""Host energy against a fake powercap tree whose counters advance and wrap."""

import os
from pathlib import Path

import pytest

from edgepipe.profilers import energy


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


def test_profile_reads_a_live_counter_that_wraps(tmp_path):
    """A whole profile against a fake package counter advancing at 5 W and wrapping every 0.8 s.

    RAPL counters wrap after minutes; at most one wrap between two reads can be unwound, so the
    fake wraps about once per measured window (0.6 s here).
    """
    import threading
    import time

    import numpy as np

    from edgepipe.profilers.harness import TimingSettings
    from edgepipe.profilers.profile import profile_in_process
    from tests.profile_models import onnx_graph

    watts, wrap = 5.0, 4_000_000  # a 4 J range
    zone = _zone(tmp_path / "powercap", "intel-rapl:0", "package-0", 0, max_range=wrap)
    stop = threading.Event()

    def advance() -> None:
        start = time.perf_counter()
        while not stop.is_set():
            uj = int((time.perf_counter() - start) * watts * 1e6) % wrap
            (zone / "energy_uj.tmp").write_text(f"{uj}\n")
            os.replace(zone / "energy_uj.tmp", zone / "energy_uj")  # readers never see a half-written file
            time.sleep(0.001)

    model = onnx_graph(tmp_path / "model.onnx", [1, 64])
    thread = threading.Thread(target=advance, daemon=True)
    thread.start()
    try:
        result = profile_in_process(
            "onnxruntime",
            model,
            {"x": np.ones((1, 64), np.float32)},
            1,
            TimingSettings(2, 0.0, 50, 0.6, 2.0),
            powercap_root=tmp_path / "powercap",
        )
    finally:
        stop.set()
        thread.join()
    figures = result["energy"]
    assert figures["status"] == "measured" and figures["source"] == "rapl:package-0"
    # Wraps unwound, the counter's power comes back; the same power idle leaves ~0 J per inference.
    assert figures["avg_power_w"] == pytest.approx(watts, rel=0.15), figures
    assert abs(figures["mj_per_inference"]) * result["latency_ms"]["n"] < 0.15 * watts * 1e3 * 0.6, figures
