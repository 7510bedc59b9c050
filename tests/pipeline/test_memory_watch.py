"""A stage's memory record: phases named by progress steps, this process's peak per phase, its children's."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import numpy as np
import pytest

from edgepipe.models.shared.memory import descendants, process_memory
from edgepipe.models.shared.progress import LOG, step, tick
from edgepipe.pipeline.core.memory import MemoryWatch

MIB = 2**20
# A child that holds 96 MiB until it is told to go, and says when it holds them.
HOLDER = "import sys; b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096]); print('held', flush=True); input()"


@pytest.fixture
def progress_at():
    """Set the progress logger's level for one test: INFO as when the CLI shows progress (steps then name
    the phases), WARNING as for a library call nobody listens to."""
    level = LOG.level
    yield LOG.setLevel
    LOG.setLevel(level)


def test_each_step_starts_a_phase_with_its_own_peaks(progress_at):
    progress_at(logging.INFO)
    with MemoryWatch(interval=0.05) as watch:
        step("quiet")
        step("allocating")
        held = np.ones(64 * MIB // 8)  # touched: resident
        # Held over a few samples: after earlier tests this process's VmHWM may already be higher, and then
        # the phase's peak is its largest sampled VmRSS, which misses what is freed within one interval.
        time.sleep(0.3)
        tick("half way")  # a tick is no new phase
        del held
        step("a child holds memory")
        child = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"held\n" and child.pid in descendants()
        time.sleep(0.3)  # a few of the watch's samples
        child.communicate(b"\n")
    record = watch.record()
    phases = {p["phase"]: p for p in record["phases"]}
    assert list(phases) == ["start", "quiet", "allocating", "a child holds memory"]
    assert phases["allocating"]["edgepipe_mib"] >= phases["quiet"]["edgepipe_mib"] + 60
    assert phases["a child holds memory"]["children_mib"] >= 90 and phases["quiet"]["children_mib"] == 0
    assert phases["a child holds memory"]["sum_mib"] >= phases["a child holds memory"]["children_mib"]
    assert record["status"] == "measured" and record["peak_children_mib"] >= 90
    assert record["peak_edgepipe_mib"] >= phases["allocating"]["edgepipe_mib"]
    assert record["edgepipe_hwm_mib"] == pytest.approx(process_memory()[1], abs=1)


def test_without_progress_the_stage_is_one_phase(progress_at):
    progress_at(logging.WARNING)
    with MemoryWatch(interval=0.05) as watch:
        step("nobody listens")  # the logger stays below INFO: no record reaches the watch
    assert [p["phase"] for p in watch.record()["phases"]] == ["start"]


def test_without_proc_the_record_says_so(monkeypatch, progress_at):
    progress_at(logging.INFO)
    monkeypatch.setattr("edgepipe.pipeline.core.memory.process_memory", lambda pid="self": None)
    with MemoryWatch() as watch:
        step("export: anything")
    assert watch.record() == {
        "status": "unavailable",
        "reason": "no /proc/self/status to read memory from (not Linux)",
    }
