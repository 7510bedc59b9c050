"""Profile one model file with one runtime; callers run it in a fresh child (isolation.in_child) per call."""

from __future__ import annotations

import platform
import resource
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import psutil

from edgepipe.profilers import energy
from edgepipe.profilers.harness import TimingSettings, measure, warm_up
from edgepipe.profilers.runtimes import RUNTIMES, RuntimeOptions
from edgepipe.profilers.stats import latency_stats


def profile_in_process(
    runtime: str,
    path: Path,
    feeds: dict[str, np.ndarray],
    threads: int,
    timing: TimingSettings,
    powercap_root: Path = energy.POWERCAP,
    options: RuntimeOptions = RuntimeOptions(),
) -> dict:
    """Load, warm up and time one model; the DESIGN.md profile keys plus load and first-run times.

    Run it through isolation.in_child, so that the memory figures belong to this model alone.
    """
    process = psutil.Process()
    rss_start = process.memory_info().rss
    t0 = time.perf_counter_ns()
    session = RUNTIMES[runtime](Path(path), threads, options)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    rss_loaded = process.memory_info().rss
    peak_load_mb = peak_rss_bytes() / 2**20  # before any inference: what loading alone costs at its worst
    invoke = session.bind(feeds)
    first_ns, warm_runs = warm_up(invoke, timing)
    domains, reason = energy.package_domains(powercap_root)
    idle_w = energy.idle_power_w(domains, 0.5) if domains else 0.0
    before = energy.read_uj(domains) if domains else []
    samples, wall_ns = measure(invoke, timing)
    after = energy.read_uj(domains) if domains else []
    peak_rss_mb = peak_rss_bytes() / 2**20
    # throughput_ips counts invocations; with a batch of N each one carries N samples
    batch = next((int(np.shape(v)[0]) for v in feeds.values() if np.ndim(v)), 1)
    energy_figures = (
        energy.energy_result(
            energy.consumed_uj(domains, before, after),
            wall_ns,
            len(samples),
            idle_w,
            "rapl:" + ",".join(d.name for d in domains),
        )
        if domains
        else energy.unavailable(reason)
    )
    return {
        "artifact": str(path),
        "runtime": runtime,
        "library": session.library,
        "kernels": session.kernels,
        **({"kernels_note": session.note} if session.note else {}),
        "device": host_facts(threads),
        "latency_ms": latency_stats(samples),
        "throughput_ips": len(samples) / (wall_ns / 1e9),
        "batch": batch,
        "samples_per_second": batch * len(samples) / (wall_ns / 1e9),
        "memory": {
            "peak_rss_mb": peak_rss_mb,
            "peak_rss_load_mb": peak_load_mb,
            "rss_before_load_mb": rss_start / 2**20,
            "load_rss_delta_mb": (rss_loaded - rss_start) / 2**20,
            "model_size_bytes": Path(path).stat().st_size,
            "scope": "child process that loaded and ran only this model",
        },
        "energy": energy_figures,
        "load_ms": load_ms,
        "first_inference_ms": first_ns / 1e6,
        "warmup_runs": warm_runs,
        "settings": {**asdict(timing), "threads": threads, **asdict(options)},
        "samples_ns": samples.tolist(),
    }


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark.

    VmHWM belongs to the current address space, so a spawned child does not inherit its
    parent's peak; getrusage's ru_maxrss does survive fork and exec on Linux, which would
    charge the parent's TensorFlow to a 100 kB model.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if platform.system() == "Darwin" else 1024)


def host_facts(threads: int) -> dict:
    """What the host is, so results from different machines can be told apart."""
    return {
        "kind": "host",
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "system": platform.system(),
        "cpu_count": psutil.cpu_count(logical=True),
        "threads": threads,
        "python": platform.python_version(),
    }
