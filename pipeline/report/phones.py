"""report.md section for phones: benchmark_model latency, memory and energy per artifact and phone."""

from __future__ import annotations

from edgepipe.pipeline.report.figures import figure


def phone_lines(profile: dict) -> list[str]:
    """The 'On the phone' table and every note a reader must see; nothing without phone results."""
    results = profile.get("device_results", [])
    if not results:
        return []
    lines = [
        "## On the phone",
        "",
        "TFLite's benchmark_model on the phone; median, mean and std as the tool prints them. Energy: battery "
        "current x voltage (or power rails) over the measured window, idle baseline subtracted, ± one standard "
        "uncertainty.",
        "",
        "| phone | artifact | delegate | median ms | mean ms | std ms | n | peak MB | mJ/inference | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['serial']} | `{r['artifact']}` | | | | | | | | failed |")
            notes.append(f"- {r['serial']}, `{r['artifact']}`: {r['error']}")
            continue
        lat, energy, phone = r["latency_ms"], r["energy"], r["device"]
        mj = (
            f"{energy['mj_per_inference']:.4f} ± {energy['uncertainty_mj_per_inference']:.4f}"
            if energy["status"] == "measured"
            else "n/a"
        )
        lines.append(
            f"| {phone['manufacturer']} {phone['model']} ({r['serial']}) | `{r['artifact']}` | "
            f"{r['delegation']['delegate']} | {figure(lat['p50'])} | {figure(lat['mean'])} | {figure(lat['std'])} | "
            f"{lat['n']} | {figure(r['memory']['peak_rss_mb'], '.1f')} | {mj} | ok |"
        )
        notes += [f"- {r['serial']}, `{r['artifact']}`: {note}" for note in phone_notes(r)]
    return [*lines, "", *notes, ""] if notes else [*lines, ""]


def phone_notes(r: dict) -> list[str]:
    """What a reader of one phone result must not miss: no energy, CPU fallback, throttling, a warm start."""
    notes = []
    if r["energy"]["status"] != "measured":
        notes.append(f"energy unavailable: {r['energy']['reason']}")
    if r["delegation"]["partial"]:
        notes.append(f"partial delegation: {r['delegation']['note']}")
    if r["thermal"]["throttled"]:
        notes.append(f"throttling suspected: {'; '.join(r['thermal']['throttle_reasons'])}")
    if not r["thermal"]["cooldown"]["reached"]:
        cool = r["thermal"]["cooldown"]
        notes.append(
            f"started warm: {cool['end_c']} C after {cool['waited_s']:.0f} s of cooling, "
            f"idle baseline {cool['baseline_c']} C"
        )
    return notes
