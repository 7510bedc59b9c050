"""Energy per inference from the Power Stats HAL's cumulative rail energy meters.

`dumpsys android.hardware.power.stats.IPowerStats/default` prints, under a
`PowerStats HAL 2.0 energy meter` header, one `[RAIL]:subsystem   12345.67 mWs` line per channel:
cumulative energy since boot, measured by the PMIC on the phone's side of the battery, so a
charging cable does not disturb it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DUMPSYS = "dumpsys android.hardware.power.stats.IPowerStats/default"
_HEADER = re.compile(r"=+ PowerStats HAL 2\.0 energy meter =+")
_ROW = re.compile(r"^\s*(\S.*?)\s+(-?\d+(?:\.\d+)?)\s+mWs\b")


@dataclass(frozen=True)
class RailSnapshot:
    """Cumulative rail energies (mJ) read between two uptime stamps."""

    before_s: float
    after_s: float
    rails_mj: dict[str, float]

    @property
    def t(self) -> float:
        """When the read most likely happened: the middle of the dumpsys call."""
        return (self.before_s + self.after_s) / 2

    @property
    def spread_s(self) -> float:
        """Half the time dumpsys took: how far off `t` may be."""
        return (self.after_s - self.before_s) / 2


def parse_rails(text: str) -> dict[str, float]:
    """Channel -> cumulative energy in mJ (mWs) from the energy-meter section; {} when there is none."""
    rails, inside = {}, False
    for line in text.splitlines():
        if _HEADER.search(line):
            inside = True
            continue
        if inside and line.startswith("=") or inside and "End of" in line:
            break
        m = _ROW.match(line) if inside else None
        if m:
            rails[m.group(1).strip()] = float(m.group(2))
    return rails


def rails_energy(
    idle: tuple[RailSnapshot, RailSnapshot], window: tuple[RailSnapshot, RailSnapshot], run_s: float, inferences: int
) -> dict:
    """Energy per inference: active rail power between the window snapshots, over the run_s the runs took.

    The window snapshots are taken by dumpsys calls while the benchmark runs, so they bracket most
    of the measured phase; its exact length comes from the benchmark's own timestamps (run_s).
    """
    names = set(idle[0].rails_mj) & set(idle[1].rails_mj) & set(window[0].rails_mj) & set(window[1].rails_mj)
    if not names:
        return {"status": "unavailable", "reason": "the power rail snapshots share no channel"}

    def delta(a: RailSnapshot, b: RailSnapshot) -> float:
        return sum(b.rails_mj[n] - a.rails_mj[n] for n in names) / 1e3

    idle_s, window_s = idle[1].t - idle[0].t, window[1].t - window[0].t
    idle_w = delta(*idle) / idle_s
    window_j = delta(*window)
    active_w = window_j / window_s - idle_w
    if active_w <= 0:
        return {
            "status": "unavailable",
            "reason": f"rail power during the run ({window_j / window_s:.3f} W) was not above idle "
            f"({idle_w:.3f} W); lengthen the run (--min-secs)",
        }
    # the window's edges are known to within half a dumpsys call each
    edge_s = (window[0].spread_s ** 2 + window[1].spread_s ** 2) ** 0.5
    # energy counted over a window whose ends are off by edge_s: the average power is off by that share
    relative = (window_j / window_s) * (edge_s / window_s) / active_w
    per_inference = active_w * run_s / inferences
    return {
        "status": "measured",
        "source": "power_rails:IPowerStats",
        "mj_per_inference": per_inference * 1e3,
        "inferences_per_joule": 1 / per_inference,
        "avg_power_w": window_j / window_s,
        "idle_power_w": idle_w,
        "active_power_w": active_w,
        "window_s": run_s,
        "rail_window_s": window_s,
        "inferences": inferences,
        "samples": 4,
        "rails": sorted(names),
        "uncertainty_mj_per_inference": per_inference * relative * 1e3,
        "uncertainty_pct": 100 * relative,
    }
