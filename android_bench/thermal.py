"""Thermal state around a run: cool down to near the idle temperature first, flag throttling after."""

from __future__ import annotations

import time
from dataclasses import dataclass

from edgepipe.android_bench.adb import Adb
from edgepipe.android_bench.facts import Thermal, parse_thermal, probe

STATUS_NAMES = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}


@dataclass(frozen=True)
class CoolDown:
    """How long a phone was left to cool before a run, and whether it got near its baseline."""

    baseline_c: float | None
    start_c: float | None
    end_c: float | None
    waited_s: float
    reached: bool


def thermal_now(adb: Adb, serial: str) -> Thermal:
    """Temperatures, status and clocks right now."""
    return parse_thermal(probe(adb, serial))


def cool_down(
    adb: Adb, serial: str, baseline_c: float | None, margin_c: float, max_wait_s: float, poll_s: float = 2.0
) -> tuple[CoolDown, Thermal]:
    """Wait (at most max_wait_s) until the hottest zone is within margin_c of baseline_c."""
    start = now = thermal_now(adb, serial)
    t0 = time.monotonic()
    while (
        baseline_c is not None
        and now.hottest_c is not None
        and now.hottest_c > baseline_c + margin_c
        and time.monotonic() - t0 + poll_s <= max_wait_s
    ):
        time.sleep(poll_s)
        now = thermal_now(adb, serial)
    reached = baseline_c is None or now.hottest_c is None or now.hottest_c <= baseline_c + margin_c
    return CoolDown(baseline_c, start.hottest_c, now.hottest_c, time.monotonic() - t0, reached), now


def thermal_record(
    before: Thermal, after: Thermal, cpus: list[int], max_khz: dict[int, int], governors: dict[int, str]
) -> dict:
    """Before/after temperatures and clocks of a run, with the reasons to suspect throttling."""
    reasons = []
    if after.status:
        reasons.append(f"thermal status {STATUS_NAMES.get(after.status, after.status)} after the run")
    capped = {
        c: after.cap_khz[c] for c in cpus if c in after.cap_khz and c in max_khz and after.cap_khz[c] < max_khz[c]
    }
    if capped:
        reasons.append(
            "CPU frequency capped below its maximum on "
            + ", ".join(f"cpu{c} ({khz / 1000:.0f} of {max_khz[c] / 1000:.0f} MHz)" for c, khz in capped.items())
        )
    return {
        "status_before": before.status,
        "status_after": after.status,
        "hottest_before_c": before.hottest_c,
        "hottest_after_c": after.hottest_c,
        "zones_before_c": before.zones_c,
        "zones_after_c": after.zones_c,
        "governors": {str(c): governors[c] for c in cpus if c in governors},
        "cur_mhz_after": {str(c): after.cur_khz[c] / 1000 for c in cpus if c in after.cur_khz},
        "max_mhz": {str(c): max_khz[c] / 1000 for c in cpus if c in max_khz},
        "throttled": bool(reasons),
        "throttle_reasons": reasons,
    }
