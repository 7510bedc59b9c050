"""Several phones at once: one job per phone at a time, results keyed by serial, a lost phone fails alone."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgepipe.android_bench.adb import Adb
from edgepipe.android_bench.device_profile import profile_on_device
from edgepipe.android_bench.device_run import BenchSettings
from edgepipe.models.shared.errors import DeviceError, EdgepipeError

log = logging.getLogger(__name__)


def resolve_serials(adb: Adb, which: str) -> list[str]:
    """'all' (every online phone) or a comma-separated list of serials, in the order given."""
    if which == "all":
        entries = adb.devices()
        ready = [e.serial for e in entries if e.state == "device"]
        for e in entries:
            if e.state != "device":
                log.warning("skipping %s: %s (%s)", e.serial, e.state, e.hint)
        if not ready:
            hints = "; ".join(f"{e.serial} is {e.state}: {e.hint}" for e in entries)
            raise DeviceError(
                f"--device all: no phone is online ({hints or 'adb lists none'}); "
                "connect one with USB debugging on, or 'adb connect HOST:PORT'"
            )
        return ready
    serials = [s.strip() for s in which.split(",") if s.strip()]
    if not serials:
        raise DeviceError("--device: give a serial, a comma-separated list of serials, or all")
    return list(dict.fromkeys(serials))


def profile_on_devices(
    adb: Adb,
    serials: list[str],
    model: Path,
    binary: Path | None,
    settings: BenchSettings,
    baselines: dict[str, float] | None = None,
) -> dict[str, dict]:
    """Profile model on every phone in parallel; a failed phone's entry says why and keeps what it got.

    baselines: each phone's idle temperature, which it cools back to before its run.
    """

    def one(serial: str) -> dict:
        try:
            baseline = (baselines or {}).get(serial)
            return {"status": "ok", **profile_on_device(adb, serial, model, binary, settings, baseline)}
        except EdgepipeError as exc:
            log.warning("%s: %s", serial, exc)
            return {
                "status": "failed",
                "error": str(exc),
                "error_type": type(exc).__name__,
                "partial": getattr(exc, "partial", None),
            }

    with ThreadPoolExecutor(max_workers=max(1, len(serials))) as pool:
        return dict(zip(serials, pool.map(one, serials)))
