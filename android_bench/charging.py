"""Stopping a USB charger from feeding the phone while energy is measured, and restoring it after.

Two switches exist on some builds: BatteryService's `dumpsys battery suspend_input` (undone by
`dumpsys battery reset`) and the `power.battery_input.suspended` property of Pixel kernels. Either
is tried and then verified: the battery must report that it no longer charges.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from edgepipe.android_bench.adb import Adb
from edgepipe.android_bench.facts import Battery, parse_battery, probe
from edgepipe.models.shared.errors import DeviceError

log = logging.getLogger(__name__)

SWITCHES = (
    ("dumpsys battery suspend_input", "dumpsys battery reset"),
    ("setprop power.battery_input.suspended true", "setprop power.battery_input.suspended false"),
)


@dataclass(frozen=True)
class Suspension:
    """How charging was suspended (None: it was not), and why not."""

    method: str | None
    reason: str = ""


def battery_now(adb: Adb, serial: str) -> Battery:
    """The battery service's current view."""
    return parse_battery(probe(adb, serial))


@contextlib.contextmanager
def charging_suspended(adb: Adb, serial: str):
    """Yield a Suspension; whatever switch was thrown is thrown back on exit, even after a failure."""
    undo, tried = None, []
    try:
        for on, off in SWITCHES:
            done = adb.shell(serial, on, check=False)
            undo = off
            battery = battery_now(adb, serial)
            if done.returncode == 0 and battery.status in ("discharging", "not charging"):
                yield Suspension(on)
                return
            tried.append(f"'{on}' left the battery {battery.status}")
            adb.shell(serial, off, check=False)
            undo = None
        yield Suspension(None, "charging could not be suspended on this build (" + "; ".join(tried) + ")")
    finally:
        if undo is not None:
            try:
                adb.shell(serial, undo, timeout=30)
            except DeviceError as exc:  # the phone may be gone; say so, the original error matters more
                log.warning("could not restore charging on %s with '%s': %s", serial, undo, exc)
