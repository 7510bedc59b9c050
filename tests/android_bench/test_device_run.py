"""The device session's trace: stamped lines, blocks, the measured window; and the binary checks."""

from __future__ import annotations

import subprocess

import pytest

from edgepipe.android_bench.device_profile import measured_window
from edgepipe.android_bench.device_run import BenchSettings, Trace, _take, check_binary, session_script
from edgepipe.models.shared.errors import ConfigError

BENCH = {"inference": {"count": 1000, "avg_us": 2000.0}}  # 2.0 s of inference


def trace_of(lines: list[str]) -> Trace:
    trace, block = Trace(), None
    for line in lines:
        block = _take(trace, line, block, None)
    return trace


def test_session_output_is_filed_by_kind():
    trace = trace_of(
        [
            "@@ idle_start 100.00",
            "100.50|INFO: Running benchmark for at least 1 iterations",
            "100.60|INFO: count=1 curr=5000",
            "100.60|INFO: Running benchmark for at least 50 iterations",
            "102.70|INFO: count=1000 first=1 curr=1 min=1 max=1 avg=2000 std=1",
            "102.71|@@exit 0",
            "@@ run_end 102.72",
            "@@block samples",
            "100.00 150000 3900000",
            "@@end",
        ]
    )
    assert trace.stamps == {"idle_start": 100.0, "exit": 102.71, "run_end": 102.72, "end": 102.72}
    assert trace.exit_code == 0 and trace.blocks == {"samples": ["100.00 150000 3900000"]}
    assert trace.output.splitlines()[0] == "INFO: Running benchmark for at least 1 iterations"
    # the warm-up stats line shares a timestamp with the measured phase's start; order, not time, tells them apart
    assert measured_window(trace, BENCH) == ((100.6, 102.7), "streamed output lines")


def test_buffered_output_falls_back_to_the_tools_own_run_time():
    trace = trace_of(
        [
            "103.00|INFO: Running benchmark for at least 1 iterations",
            "103.00|INFO: count=1 curr=5000",
            "103.00|INFO: Running benchmark for at least 50 iterations",
            "103.00|INFO: count=1000 first=1 curr=1 min=1 max=1 avg=2000 std=1",
            "103.05|@@exit 0",
        ]
    )
    window, how = measured_window(trace, BENCH)
    assert window == pytest.approx((101.05, 103.05)) and "buffered" in how


def test_binary_checks(tmp_path):
    with pytest.raises(ConfigError, match="ai.google.dev"):
        check_binary(None, "arm64-v8a")
    elf = tmp_path / "benchmark_model"
    elf.write_bytes(b"\x7fELF" + bytes(14) + (62).to_bytes(2, "little") + bytes(100))  # x86-64
    with pytest.raises(ConfigError, match="built for x86_64 but the phone is arm64-v8a"):
        check_binary(elf, "arm64-v8a")
    assert check_binary(elf, "x86_64") == elf
    with pytest.raises(ConfigError, match="delegate 'tpu'"):
        BenchSettings(delegate="tpu")


def test_samples_bracket_the_baseline_and_the_run_even_from_a_slow_sampler(tmp_path):
    # a sampler whose first reading comes late and which reads only every 0.3 s
    sampler = 'sleep 0.4; while [ ! -e stop ]; do read up _ < /proc/uptime; echo "$up 150000 3900000"; sleep 0.3; done'
    command = "echo 'Running benchmark'; echo 'count=1 avg=1'; echo 'Running benchmark'; echo 'count=5 avg=1'"
    script = session_script(str(tmp_path), command, 0.1, sampler, rails=False, tail_s=0.05)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    trace = trace_of(done.stdout.splitlines())
    assert trace.exit_code == 0 and "end" in trace.stamps, done.stdout + done.stderr
    times = [float(line.split()[0]) for line in trace.blocks["samples"]]
    assert times[0] <= trace.stamps["idle_start"] and times[-1] >= trace.stamps["run_end"], (times, trace.stamps)
