"""Host energy from Linux powercap RAPL package counters, or the reason it is unavailable."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplDomain:
    """One package-level RAPL counter."""

    name: str
    energy_file: Path
    max_range_uj: int


def package_domains(root: Path = POWERCAP) -> tuple[list[RaplDomain], str]:
    """Package domains under root, or ([], reason) when none can be read."""
    if not root.is_dir():
        return [], f"no RAPL counters: {root} does not exist (not Linux, or no powercap driver)"
    domains = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:  # sub-zones (core, uncore, dram) are inside a package
            continue
        try:
            name = (zone / "name").read_text().strip()
            max_range = int((zone / "max_energy_range_uj").read_text())
            (zone / "energy_uj").read_text()
        except PermissionError:
            return [], (
                f"RAPL counter {zone / 'energy_uj'} is not readable; run as root or "
                f"'sudo chmod o+r {root}/intel-rapl:*/energy_uj'"
            )
        except OSError as exc:
            return [], f"RAPL zone {zone} unreadable: {exc}"
        if name.startswith("package"):
            domains.append(RaplDomain(name, zone / "energy_uj", max_range))
    if not domains:
        return [], f"no RAPL package counters under {root}"
    return domains, ""


def read_uj(domains: list[RaplDomain]) -> list[int]:
    """Current counter values in microjoules."""
    return [int(d.energy_file.read_text()) for d in domains]


def consumed_uj(domains: list[RaplDomain], before: list[int], after: list[int]) -> int:
    """Energy between two readings, summed over packages, with counter wraparound."""
    total = 0
    for d, b, a in zip(domains, before, after):
        total += a - b if a >= b else d.max_range_uj - b + a
    return total


def idle_power_w(domains: list[RaplDomain], seconds: float) -> float:
    """Average package power while this process sleeps."""
    before, t0 = read_uj(domains), time.perf_counter_ns()
    time.sleep(seconds)
    after, t1 = read_uj(domains), time.perf_counter_ns()
    return consumed_uj(domains, before, after) / 1e6 / ((t1 - t0) / 1e9)


def energy_result(total_uj: int, wall_ns: int, inferences: int, idle_w: float, source: str) -> dict:
    """Energy per inference over a measured window, the idle baseline subtracted."""
    seconds = wall_ns / 1e9
    avg_power = total_uj / 1e6 / seconds
    active_j = max(total_uj / 1e6 - idle_w * seconds, 0.0)
    per_inference_j = active_j / inferences
    return {
        "status": "measured",
        "source": source,
        "mj_per_inference": per_inference_j * 1e3,
        "inferences_per_joule": (1 / per_inference_j) if per_inference_j > 0 else None,
        "avg_power_w": avg_power,
        "idle_power_w": idle_w,
        "window_s": seconds,
        "samples": inferences,
    }


def unavailable(reason: str) -> dict:
    """The DESIGN.md form for a figure that cannot be measured."""
    return {"status": "unavailable", "reason": reason}
