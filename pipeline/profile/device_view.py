"""Terminal tables for phones: `edgepipe devices` and `edgepipe profile --device`."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from edgepipe.pipeline.core.console import keyed_table
from edgepipe.pipeline.report.figures import figure
from edgepipe.pipeline.report.phones import phone_notes


def cores_text(clusters: list[dict]) -> str:
    """'4x1.80 + 2x2.35 + 2x2.85 GHz', LITTLE first."""
    if not clusters:
        return "-"
    return " + ".join(f"{len(c['cpus'])}x{c['max_mhz'] / 1000:.2f}" for c in clusters) + " GHz"


def print_devices(console: Console, rows: list[dict]) -> None:
    """One row per phone; unusable phones listed with the fix."""
    if not rows:
        console.print(
            "no Android devices: connect one with USB debugging on (or 'adb connect HOST:PORT'), "
            "then check 'adb devices'"
        )
        return
    cells = []
    for r in rows:
        if r["state"] != "device":
            cells.append((r["serial"], r["state"], r.get("model", "-"), "", "", "", "", "", ""))
            continue
        b = r["battery"]
        battery = f"{b['level']}% {b['status']}, {b['temperature_c']} C" + (
            f", powered by {'+'.join(b['powered_by'])}" if b["powered_by"] else ""
        )
        cells.append(
            (
                r["serial"],
                r["state"],
                f"{r['manufacturer']} {r['model']}",
                f"{r['android_version']} ({r['api_level']})",
                r["abi"] or "-",
                r["soc"] or "-",
                cores_text(r["clusters"]),
                ", ".join(r["governors"]) or "-",
                battery,
            )
        )
    headers = ("serial", "state", "model", "Android (API)", "ABI", "SoC", "cores", "governor", "battery")
    console.print(keyed_table(headers, cells))
    for r in rows:
        if r["state"] != "device":
            console.print(f"{r['serial']} is {r['state']}: {r['hint']}")


def print_phone_results(console: Console, result: dict) -> None:
    """Latency, memory and energy per phone, then every note a user must see (fallbacks, throttling, energy)."""
    per_phone = result.get("devices") or {result["device"]["serial"]: {"status": "ok", **result}}
    cells, notes = [], []
    for serial, r in per_phone.items():
        if r["status"] != "ok":
            cells.append((serial, "-", "", "", "", "", "", "", f"failed: {r['error'][:60]}"))
            notes.append(f"{serial}: {r['error']}")
            continue
        lat, energy = r["latency_ms"], r["energy"]
        cells.append(
            (
                serial,
                r["device"]["model"] or "-",
                figure(lat["p50"]),
                figure(lat["mean"]),
                figure(lat["std"]),
                str(lat["n"]),
                figure(r["memory"]["peak_rss_mb"], ".1f"),
                f"{energy['mj_per_inference']:.4f} ± {energy['uncertainty_mj_per_inference']:.4f}"
                if energy["status"] == "measured"
                else "n/a",
                "ok",
            )
        )
        notes += [f"{serial}: {note}" for note in phone_notes(r)]
    headers = ("serial", "model", "median ms", "mean ms", "std ms", "n", "peak MB", "mJ/inference", "status")
    console.print(keyed_table(headers, cells))
    console.print(f"artifact: {Path(result['artifact']).name}")
    for note in notes:
        console.print(note)
