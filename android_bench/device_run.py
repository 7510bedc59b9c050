"""Push a model and `benchmark_model` to a phone, run it under a battery sampler, and bring back a trace.

Everything lives under /data/local/tmp/edgepipe/: the binary, cached by its sha256 under bin/, and
one run-<id>/ directory per run, removed afterwards. The run is one shell session: an idle
baseline, then the tool with every output line stamped with /proc/uptime (the clock the battery
sampler uses), so the measured phase is located on the phone's own clock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgepipe.android_bench.adb import Adb, gone, quote
from edgepipe.android_bench.rails import DUMPSYS
from edgepipe.models.shared.errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

REMOTE_ROOT = "/data/local/tmp/edgepipe"
DELEGATE_FLAGS = {
    "cpu": ("--use_xnnpack=false",),
    "xnnpack": ("--use_xnnpack=true",),
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
}
ELF_MACHINES = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}
BINARY_HELP = (
    "benchmark_model is not shipped with edgepipe; download the prebuilt 'android_aarch64_benchmark_model' "
    "(or android_arm for 32-bit phones) from https://ai.google.dev/edge/litert/models/benchmark_tools, or "
    "build it: bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model; "
    "then pass --benchmark-binary PATH or set benchmark_binary in the job's [profile] section"
)


@dataclass(frozen=True)
class BenchSettings:
    """How benchmark_model is run and measured on a phone."""

    threads: int = 1
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    cpus: str | None = None  # big, little, all or a hex mask; None: no pinning
    delegate: str = "cpu"
    op_profile: bool = True  # in a second, shorter pass, so profiling overhead stays out of the timings
    op_profile_runs: int = 20
    energy: bool = True
    idle_s: float = 2.0
    sample_hz: float = 20.0
    suspend_charging: bool = False
    cooldown_max_s: float = 60.0
    cooldown_margin_c: float = 2.0

    def __post_init__(self):
        if self.delegate not in DELEGATE_FLAGS:
            raise ConfigError(f"delegate {self.delegate!r} is not one of {', '.join(DELEGATE_FLAGS)}")
        if self.sample_hz < 10:
            raise ConfigError(f"sample_hz {self.sample_hz}: battery sampling below 10 Hz cannot place the window")


@dataclass
class Trace:
    """What one device-side session printed, split by kind."""

    lines: list[tuple[float, str]] = field(default_factory=list)  # benchmark output, stamped
    stamps: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    blocks: dict[str, list[str]] = field(default_factory=dict)  # "samples", "rails_<name>.txt"

    @property
    def output(self) -> str:
        """The benchmark's own output, as it printed it."""
        return "\n".join(text for _, text in self.lines)


def check_binary(binary: Path | None, abi: str | None) -> Path:
    """The benchmark binary, checked to exist and to match the phone's ABI when it is an ELF file."""
    if binary is None:
        raise ConfigError(f"no benchmark_model binary given; {BINARY_HELP}")
    if not binary.is_file():
        raise ConfigError(f"benchmark binary {binary} not found; {BINARY_HELP}")
    head = binary.read_bytes()[:20]
    if head[:4] == b"\x7fELF" and len(head) == 20:
        built_for = ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "an unknown machine")
        if abi and built_for != abi and not (abi == "arm64-v8a" and built_for == "armeabi-v7a"):
            raise ConfigError(
                f"benchmark binary {binary} is built for {built_for} but the phone is {abi}; "
                f"use the matching build ({BINARY_HELP.split(';')[1].strip()})"
            )
    return binary


def ensure_binary(adb: Adb, serial: str, binary: Path) -> tuple[str, bool]:
    """The binary's path on the phone, pushed only when that sha256 is not cached there yet."""
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    remote_dir = f"{REMOTE_ROOT}/bin/{digest}"
    remote = f"{remote_dir}/benchmark_model"
    if adb.shell(serial, f"test -x {quote(remote)} && echo cached", check=False).stdout.strip() == "cached":
        return remote, False
    adb.shell(serial, f"mkdir -p {quote(remote_dir)}")
    adb.push(serial, binary, remote + ".part")
    # renamed into place only once complete, so a broken push never looks cached
    adb.shell(serial, f"chmod 755 {quote(remote + '.part')} && mv {quote(remote + '.part')} {quote(remote)}")
    return remote, True


def new_workdir(adb: Adb, serial: str) -> str:
    """A fresh private run directory on the phone."""
    work = f"{REMOTE_ROOT}/run-{uuid.uuid4().hex[:12]}"
    adb.shell(serial, f"mkdir -p {quote(work)}")
    return work


def remove_workdir(adb: Adb, serial: str, work: str) -> None:
    """Delete a run directory; a phone that is gone is only logged."""
    if not work.startswith(REMOTE_ROOT + "/run-"):  # never anything else, whatever happened upstream
        raise ValueError(f"refusing to remove {work}")
    try:
        adb.shell(serial, f"rm -rf {quote(work)}", timeout=60)
    except DeviceError as exc:
        log.warning("could not remove %s on %s: %s", work, serial, exc)


def benchmark_args(settings: BenchSettings, graph: str, op_profile: bool) -> list[str]:
    """benchmark_model flags for one pass; the measured pass never profiles ops."""
    args = [
        f"--graph={graph}",
        f"--num_threads={settings.threads}",
        f"--warmup_runs={settings.warmup_runs}",
        f"--warmup_min_secs={settings.warmup_min_secs:g}",
        f"--max_secs={settings.max_secs:g}",
        *DELEGATE_FLAGS[settings.delegate],
    ]
    if op_profile:
        return args + [f"--num_runs={settings.op_profile_runs}", "--min_secs=0", "--enable_op_profiling=true"]
    return args + [
        f"--num_runs={settings.runs}",
        f"--min_secs={settings.min_secs:g}",
        "--report_peak_memory_footprint=true",
    ]


def session_script(
    work: str, command: str, idle_s: float, sampler: str | None, rails: bool, tail_s: float = 0.0
) -> str:
    """The device-side session: idle baseline, stamped benchmark output, then the collected blocks."""
    snap = (
        f'rails() {{ stamp "rails_before_$1"; {DUMPSYS} > rails_$1.txt 2>/dev/null; stamp "rails_after_$1"; }}; '
        if rails
        else "rails() { :; }; "
    )
    parts = [
        f"cd {quote(work)} || exit 97",
        'stamp() { read up _ < /proc/uptime; echo "@@ $1 $up"; }',
        snap.rstrip("; "),
        # a forked sampler may take its first reading late: the baseline starts after it has
        (
            f": > samples.txt; ( {sampler} ) > samples.txt 2>/dev/null & sp=$!; {_samples_grown_by(1)}"
            if sampler
            else "sp="
        ),
        "rails idle_start",
        "stamp idle_start",
        f"sleep {idle_s:g}",
        "stamp idle_end",
        "rails idle_end",
        # stderr joins stdout so every line is stamped; the tool's exit code travels down the same pipe
        f'{{ {command}; echo "@@exit $?"; }} 2>&1 | {{ n=0; w=0; while IFS= read -r line; do '
        'read up _ < /proc/uptime; echo "$up|$line"; '
        'case "$line" in *"Running benchmark"*) n=$((n+1)); [ $n -eq 2 ] && rails window_start;; '
        "*count=*) [ $n -eq 2 ] && [ $w -eq 0 ] && w=1 && rails window_end;; esac; done; }",
        # the sampler runs on for tail_s and two more readings, so samples bracket the window's end
        "stamp run_end",
        f"sleep {tail_s:g}" if tail_s else "",
        _samples_grown_by(2) if sampler else "",
        "touch stop",
        '[ -n "$sp" ] && wait $sp',
        'echo "@@block samples"; cat samples.txt 2>/dev/null',
        'for f in rails_*.txt; do [ -e "$f" ] && echo "@@block $f" && cat "$f"; done',
        "echo @@end",
    ]
    return "; ".join(p for p in parts if p)


def _samples_grown_by(lines: int, give_up_s: float = 5.0) -> str:
    """Shell that waits (at most give_up_s) until samples.txt holds `lines` more lines than now."""
    tries = int(give_up_s / 0.02)
    return (
        f"s0=$(wc -l < samples.txt); i=0; while [ $(wc -l < samples.txt) -lt $((s0 + {lines})) ] "
        f"&& [ $i -lt {tries} ]; do sleep 0.02; i=$((i + 1)); done"
    )


def run_session(
    adb: Adb, serial: str, script: str, timeout_s: float, on_line: Callable[[str], None] | None = None
) -> Trace:
    """Run a session script, streaming its lines; a phone lost mid-run raises DeviceError with the partial trace."""
    trace, block = Trace(), None
    proc = adb.shell_stream(serial, script)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        for raw in proc.stdout:
            block = _take(trace, raw.rstrip("\r\n"), block, on_line)
        stderr = proc.stderr.read()
        proc.wait()
    finally:
        timer.cancel()
        proc.stdout.close()
        proc.stderr.close()
    if "end" not in trace.stamps:
        partial = {"output": trace.output, "stamps": trace.stamps}
        # adb 29 ends a shell whose transport vanished with exit 0 and no message: ask the server instead
        state = next((e.state for e in adb.devices() if e.serial == serial), "gone")
        if gone(stderr) or state != "device":
            raise DeviceError(
                f"device {serial} disconnected during the run (adb now lists it as {state}); "
                "check the cable, then rerun",
                partial,
            )
        raise DeviceError(
            f"the run on {serial} stopped early (exit {proc.returncode}, "
            f"{(stderr.strip() or 'no message')[-160:]}); it was limited to {timeout_s:.0f} s",
            partial,
        )
    return trace


def _take(trace: Trace, line: str, block: str | None, on_line) -> str | None:
    """File one line of session output into the trace; returns the block now being read."""
    if line.startswith("@@ "):
        name, _, value = line[3:].rpartition(" ")
        trace.stamps[name] = float(value)
        return block
    if line.startswith("@@block "):
        trace.blocks[line[8:]] = []
        return line[8:]
    if line == "@@end":
        trace.stamps["end"] = trace.stamps.get("run_end", 0.0)
        return None
    if block is not None:
        trace.blocks[block].append(line)
        return block
    stamp, sep, text = line.partition("|")
    try:
        t = float(stamp) if sep else None
    except ValueError:
        t = None
    if t is None:
        trace.lines.append((trace.lines[-1][0] if trace.lines else 0.0, line))
    elif text.startswith("@@exit "):
        trace.exit_code = int(text[7:].strip() or -1)
        trace.stamps["exit"] = t
    else:
        trace.lines.append((t, text))
        if on_line:
            on_line(text)
    return block
