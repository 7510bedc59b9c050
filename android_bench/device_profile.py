"""Profile one .tflite file on one phone: the `edgepipe profile --json` keys, with the phone's facts."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable

from edgepipe.android_bench.adb import Adb, quote
from edgepipe.android_bench.battery_energy import battery_energy, parse_samples, sampler_script, unavailable
from edgepipe.android_bench.bm_output import parse_benchmark_output
from edgepipe.android_bench.charging import charging_suspended
from edgepipe.android_bench.device_run import (
    BenchSettings,
    Trace,
    benchmark_args,
    check_binary,
    ensure_binary,
    new_workdir,
    remove_workdir,
    run_session,
    session_script,
)
from edgepipe.android_bench.facts import DeviceFacts, cpu_mask, device_facts
from edgepipe.android_bench.rails import DUMPSYS, RailSnapshot, parse_rails, rails_energy
from edgepipe.android_bench.thermal import cool_down, thermal_now, thermal_record
from edgepipe.models.shared.errors import DeviceError

log = logging.getLogger(__name__)


def require_ready(adb: Adb, serial: str) -> None:
    """A DeviceError saying what to do unless the phone is attached, authorized and online."""
    entries = {e.serial: e for e in adb.devices()}
    if serial not in entries:
        known = ", ".join(entries) or "none"
        raise DeviceError(f"no device {serial!r} (attached: {known}); check the serial with 'edgepipe devices'")
    if entries[serial].state != "device":
        raise DeviceError(f"device {serial} is {entries[serial].state}: {entries[serial].hint}")


def profile_on_device(
    adb: Adb,
    serial: str,
    model: Path,
    binary: Path | None,
    settings: BenchSettings,
    baseline_c: float | None = None,
    on_line: Callable[[str], None] | None = None,
) -> dict:
    """Run benchmark_model on the phone and return latency, memory, energy, thermal and facts."""
    require_ready(adb, serial)
    facts = device_facts(adb, serial)
    binary = check_binary(binary, facts.props.get("abi"))
    mask = cpu_mask(facts, settings.cpus) if settings.cpus else None
    cooled, before = cool_down(adb, serial, baseline_c, settings.cooldown_margin_c, settings.cooldown_max_s)
    remote_bin, pushed = ensure_binary(adb, serial, binary)
    work = new_workdir(adb, serial)
    try:
        graph = f"{work}/{model.name}"
        adb.push(serial, model, graph)
        with _energy_plan(adb, serial, facts, settings) as (source, reason, suspension):
            trace = _measure(adb, serial, work, remote_bin, graph, mask, settings, source, on_line)
        after = thermal_now(adb, serial)
        ops = _op_profile(adb, serial, work, remote_bin, graph, mask, settings) if settings.op_profile else None
    finally:
        remove_workdir(adb, serial, work)
    bench = parse_benchmark_output(trace.output)
    if trace.exit_code not in (0, None):
        raise DeviceError(
            f"benchmark_model exited with {trace.exit_code} on {serial} for {model.name}: "
            f"{trace.lines[-1][1][:200] if trace.lines else 'no output'}",
            {"benchmark": bench.to_dict()},
        )
    result = bench.to_dict()
    energy = _energy(trace, result, source, reason)
    if suspension is not None:
        energy["charging"] = {"suspended_with": suspension.method, "note": suspension.reason or None}
    cpus = [c for c in facts.cpus_max_khz if mask is None or int(mask, 16) >> c & 1]
    return {
        "artifact": str(model),
        "runtime": "tflite",
        "library": "benchmark_model",
        "kernels": settings.delegate,
        "device": facts.to_dict(),
        "latency_ms": _latency(result),
        "throughput_ips": 1e6 / result["inference_avg_us"] if result.get("inference_avg_us") else None,
        "throughput_note": "sequential single-stream runs: 1 / mean latency",
        "memory": {
            "peak_rss_mb": (result["memory_mb"] or {}).get("peak") or (result["memory_mb"] or {}).get("overall"),
            "model_size_bytes": model.stat().st_size,
            "scope": "benchmark_model process on the phone (peak by periodic monitoring, else overall footprint)",
        },
        "energy": energy,
        "load_ms": result["init_us"] / 1e3 if result.get("init_us") is not None else None,
        "first_inference_ms": result["first_inference_us"] / 1e3
        if result.get("first_inference_us") is not None
        else None,
        "benchmark": result,
        "op_profile": ops,
        "delegation": _delegation(result, settings.delegate),
        "cpus": {"requested": settings.cpus, "mask": mask, "cores": cpus},
        "thermal": {
            **thermal_record(before, after, cpus, facts.cpus_max_khz, facts.governors),
            "cooldown": vars(cooled),
        },
        "binary": {"path": str(binary), "pushed": pushed, "remote": remote_bin},
    }


@contextlib.contextmanager
def _energy_plan(adb: Adb, serial: str, facts: DeviceFacts, settings: BenchSettings):
    """Yield (source, reason, suspension): 'rails', 'battery' or None with the reason none is trustworthy."""
    if not settings.energy:
        yield None, "energy measurement was switched off", None
        return
    if parse_rails(adb.shell(serial, DUMPSYS, check=False).stdout):
        yield "rails", "", None  # PMIC rails sit behind the charger: charging does not disturb them
        return
    if not facts.battery.external_power:
        yield "battery", "", None
        return
    powered = "+".join(facts.battery.powered_by) or "a charger"
    if not settings.suspend_charging:
        yield (
            None,
            (
                f"the phone is powered by {powered} (battery {facts.battery.status}), so battery current shows the "
                "charger, not the model; rerun with --suspend-charging, over Wi-Fi adb ('adb tcpip 5555'), or on "
                "a phone with power rails (Power Stats HAL)"
            ),
            None,
        )
        return
    with charging_suspended(adb, serial) as suspension:
        if suspension.method is None:
            yield None, f"the phone is powered by {powered} and {suspension.reason}; use Wi-Fi adb", suspension
        else:
            yield "battery", "", suspension


def _measure(adb, serial, work, remote_bin, graph, mask, settings: BenchSettings, source, on_line) -> Trace:
    command = " ".join(
        quote(a)
        for a in [*(["taskset", mask] if mask else []), remote_bin, *benchmark_args(settings, graph, op_profile=False)]
    )
    sampler = sampler_script(1 / settings.sample_hz, "stop") if source == "battery" else None
    script = session_script(
        work,
        command,
        settings.idle_s if source else 0,
        sampler,
        source == "rails",
        tail_s=3 / settings.sample_hz if sampler else 0,
    )
    return run_session(adb, serial, script, settings.idle_s + 2 * settings.max_secs + 120, on_line)


def _op_profile(adb, serial, work, remote_bin, graph, mask, settings: BenchSettings) -> dict | None:
    """Per-op times from a separate short pass with the tool's op profiler on."""
    command = " ".join(
        quote(a)
        for a in [*(["taskset", mask] if mask else []), remote_bin, *benchmark_args(settings, graph, op_profile=True)]
    )
    trace = run_session(adb, serial, session_script(work, command, 0, None, False), 2 * settings.max_secs + 60)
    if trace.exit_code != 0:
        last = trace.lines[-1][1][:200] if trace.lines else "no output"
        return {"status": "unavailable", "reason": f"the op-profiling pass exited with {trace.exit_code}: {last}"}
    table = parse_benchmark_output(trace.output).to_dict().get("op_profile")
    if table is None:
        return {"status": "unavailable", "reason": "benchmark_model printed no op-profiling table"}
    return {"status": "measured", "runs": settings.op_profile_runs, **table}


def _energy(trace: Trace, bench: dict, source: str | None, reason: str) -> dict:
    """Energy per inference over the measured window, located by the stamped output."""
    if source is None:
        return unavailable(reason)
    count = (bench.get("inference") or {}).get("count")
    window, how = measured_window(trace, bench)
    if not count or window is None:
        return unavailable(f"the benchmark output does not show its measured phase ({how})")
    if source == "battery":
        samples = parse_samples("\n".join(trace.blocks.get("samples", [])))
        result = battery_energy(samples, (trace.stamps["idle_start"], trace.stamps["idle_end"]), window, count)
    else:
        snaps = {name: _snapshot(trace, name) for name in ("idle_start", "idle_end", "window_start", "window_end")}
        if None in snaps.values():
            return unavailable("a power-rail snapshot is missing from the run")
        result = rails_energy(
            (snaps["idle_start"], snaps["idle_end"]),
            (snaps["window_start"], snaps["window_end"]),
            window[1] - window[0],
            count,
        )
    return {**result, "window_source": how} if result["status"] == "measured" else result


def measured_window(trace: Trace, bench: dict) -> tuple[tuple[float, float] | None, str]:
    """[start, end] of the measured phase on the phone's uptime clock, and how it was found.

    Normally: from the second 'Running benchmark' line to the measured stats line. When the tool's
    output was block-buffered, those lines arrive together at exit; then the window is the tool's
    own measured run time, ending where it exited.
    """
    running = [i for i, (_, text) in enumerate(trace.lines) if "Running benchmark" in text]
    stats = [i for i, (_, text) in enumerate(trace.lines) if "count=" in text and running and i > running[-1]]
    busy_s = (
        bench["inference"]["count"] * bench["inference"]["avg_us"] / 1e6
        if bench.get("inference") and bench["inference"].get("avg_us")
        else None
    )
    if len(running) >= 2 and stats:
        start, end = trace.lines[running[1]][0], trace.lines[stats[0]][0]
        if busy_s is None or end - start >= 0.9 * busy_s:
            return (start, end), "streamed output lines"
    if busy_s and "exit" in trace.stamps:
        end = trace.stamps["exit"]
        return (end - busy_s, end), "the tool's measured run time before it exited (its output was buffered)"
    return None, "no 'Running benchmark' and stats lines"


def _snapshot(trace: Trace, name: str) -> RailSnapshot | None:
    lines = trace.blocks.get(f"rails_{name}.txt")
    before, after = trace.stamps.get(f"rails_before_{name}"), trace.stamps.get(f"rails_after_{name}")
    if lines is None or before is None or after is None:
        return None
    return RailSnapshot(before, after, parse_rails("\n".join(lines)))


def _latency(bench: dict) -> dict:
    """The measured stats line in the host's latency keys; what the tool does not print is None."""
    stat = bench.get("inference") or {}

    def ms(key: str):
        return stat[key] / 1e3 if stat.get(key) is not None else None

    return {
        "p50": ms("median_us"),
        "p90": None,
        "p99": None,
        "p5": ms("p5_us"),
        "p95": ms("p95_us"),
        "mean": ms("avg_us"),
        "std": ms("std_us"),
        "min": ms("min_us"),
        "max": ms("max_us"),
        "n": stat.get("count"),
    }


def _delegation(bench: dict, delegate: str) -> dict:
    """How much of the graph the delegate took; partial delegation means CPU fallback."""
    done, total = bench.get("delegated_nodes"), bench.get("total_nodes")
    partial = delegate != "cpu" and done is not None and total is not None and done < total
    note = f"only {done} of {total} nodes ran on {delegate}; the rest fell back to the CPU" if partial else None
    return {"delegate": delegate, "delegated_nodes": done, "total_nodes": total, "partial": partial, "note": note}
