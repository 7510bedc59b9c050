"""How much memory a stage held, for its manifest record: this process and the processes it started
(the converter child), sampled every INTERVAL_S seconds, phase by phase.

A phase is the time between two progress steps (models/shared/progress.step, the converter child's
too, which reach this process): "export: onnx2tf translating the graph ...". Where no one listens to
progress (its logger below INFO: a library call) the stage is one phase, "start". Within a phase, this
process's peak is exact when its high-water mark (VmHWM) rose during the phase, else the largest
sampled VmRSS; the children's and the sum's are sampled, so a peak shorter than the interval can be
missed. Where /proc does not exist the record says so instead of guessing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from edgepipe.models.shared.memory import descendants, process_memory
from edgepipe.models.shared.progress import LOG

INTERVAL_S = 0.2
HOW = (
    "VmRSS of edgepipe and the processes it started in the stage, sampled every {interval:g} s (a phase's "
    "edgepipe peak is its VmHWM when that rose in the phase); edgepipe_hwm_mib is this process's VmHWM since it "
    "started"
)


@dataclass
class _Phase:
    name: str
    start: float
    hwm_start: float
    edgepipe: float = 0.0
    children: float = 0.0
    total: float = 0.0
    hwm_end: float = 0.0
    seconds: float | None = None  # set when the phase ends

    def to_dict(self) -> dict:
        own = self.hwm_end if self.hwm_end > self.hwm_start else self.edgepipe
        return {
            "phase": self.name,
            "seconds": round(self.seconds, 2),
            "edgepipe_mib": round(own, 1),
            "children_mib": round(self.children, 1),
            "sum_mib": round(max(self.total, own), 1),
        }


class MemoryWatch(logging.Handler):
    """A context in which a thread samples memory and each progress step starts a new phase."""

    def __init__(self, interval: float = INTERVAL_S):
        super().__init__(logging.INFO)
        self.interval, self.phases = interval, []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._earlier: set[int] = set()  # processes alive before the stage: not started by it
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True, name="edgepipe-memory")

    def __enter__(self) -> MemoryWatch:
        if process_memory() is None:
            return self
        self._earlier = set(descendants())
        self._new_phase("start")
        LOG.addHandler(self)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        LOG.removeHandler(self)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._sample()
            self._close_phase()

    def emit(self, record: logging.LogRecord) -> None:
        """A progress step (not a tick) ends the phase before it."""
        if getattr(record, "progress", "step") == "step":
            self._sample()
            self._new_phase(record.getMessage())

    def record(self) -> dict:
        """The manifest's memory record: peaks over the whole stage and per phase, in MiB."""
        if not self.phases:
            return {"status": "unavailable", "reason": "no /proc/self/status to read memory from (not Linux)"}
        phases = [p.to_dict() for p in self.phases]
        return {
            "status": "measured",
            "how": HOW.format(interval=self.interval),
            "peak_sum_mib": max(p["sum_mib"] for p in phases),
            "peak_edgepipe_mib": max(p["edgepipe_mib"] for p in phases),
            "peak_children_mib": max(p["children_mib"] for p in phases),
            "edgepipe_hwm_mib": round(self.phases[-1].hwm_end, 1),
            "phases": phases,
        }

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        own = process_memory()
        started = (pid for pid in descendants() if pid not in self._earlier)
        children = sum(m[0] for pid in started if (m := process_memory(pid)))
        if own is None:
            return
        with self._lock:
            phase = self.phases[-1]
            phase.edgepipe = max(phase.edgepipe, own[0])
            phase.children = max(phase.children, children)
            phase.total = max(phase.total, own[0] + children)
            phase.hwm_end = own[1]

    def _new_phase(self, name: str) -> None:
        hwm = (process_memory() or (0.0, 0.0))[1]
        with self._lock:
            self._close_phase()
            self.phases.append(_Phase(name, time.perf_counter(), hwm, hwm_end=hwm))

    def _close_phase(self) -> None:
        if self.phases and self.phases[-1].seconds is None:
            self.phases[-1].seconds = time.perf_counter() - self.phases[-1].start
