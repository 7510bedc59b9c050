"""int8_fast: the int8 file (float32 I/O) that keeps in float32 the op types whose int8 kernels are slower
on the target than their float ones, chosen from op times measured there.

On XNNPACK, an int8 op that the delegate has no int8 kernel for runs in TFLite's reference kernels:
on random-weight mobilevit_xxs, the int8 LayerNorm (SQUARED_DIFFERENCE, SUB, RSQRT) and SOFTMAX took
9.8 ms of the int8 file's 12.6, against 0.6 ms in float32, and the int8 file ran 2x the float one.
The target's op profiles of the float32 and the all-int8 file say which op types are slower in int8;
whole files, each timed against the float32 file on the target, decide which of them stay float.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgepipe.exporters.quantize.layer_losses import calibrate, quantized, run, sqnr
from edgepipe.exporters.quantize.mixed import HELD_OUT_MARGIN_DB, search_feeds
from edgepipe.exporters.tflite.op_names import by_builtin_op
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import EdgepipeError, ExportError, first_line
from edgepipe.models.shared.progress import tick

# An op type is a candidate when int8 makes it slower by more than this share of the all-int8 file's op
# time: below it, two profiles of the same file differ (mobilevit_xxs: MUL 0.29 ms against 0.24 one run,
# level the next).
MIN_EXCESS_SHARE = 0.01


class Timer(Protocol):
    """Times TFLite files on int8_fast's target; the pipeline gives one for the host or a phone."""

    target: str  # "host" or the phone's serial

    @property
    def method(self) -> str:
        """How it measures, for the record."""

    def op_times(self, model: bytes, feed: dict[str, np.ndarray]) -> list[tuple[str, float]]:
        """(profiler event, ms per inference) of one file: XNNPACK operators and TFLite kernels by name."""

    def ratio(self, candidate: bytes, reference: bytes, feed: dict[str, np.ndarray]) -> float:
        """The candidate's latency over the reference's."""


@dataclass(frozen=True)
class FastTarget:
    """Where int8_fast times its files, and the SQNR floor its file must keep."""

    timer: Timer | None = None
    min_sqnr_db: float = 20.0  # [validate] quantized_min_sqnr_db


@dataclass(frozen=True)
class OpTypeTime:
    """One TFLite op type's time per inference on the target, all of its ops together, in either file."""

    op: str
    int8_ms: float  # in the all-int8 file
    fp32_ms: float  # in the float32 file

    @property
    def excess_ms(self) -> float:
        """How much longer it takes in int8 than in float32."""
        return self.int8_ms - self.fp32_ms


@dataclass(frozen=True)
class FastStep:
    """One measured file: these op types in float32, the rest int8."""

    float_ops: tuple[str, ...]
    vs_fp32: float  # its latency over the float32 file's, on the target
    sqnr_db: float  # model output against the float model, on the search samples
    size_bytes: int

    def to_dict(self) -> dict:
        """JSON form; an infinite SQNR (no error) becomes None."""
        return {**asdict(self), "float_ops": list(self.float_ops), "sqnr_db": _finite(self.sqnr_db)}


@dataclass(frozen=True)
class FastChoice:
    """Which op types int8_fast keeps in float32, and what it measured to decide."""

    target: str
    method: str
    goal_sqnr_db: float  # the SQNR floor plus HELD_OUT_MARGIN_DB
    op_times: tuple[OpTypeTime, ...]  # every op type either profile names, the most slowed by int8 first
    unattributed_ms: dict[str, dict[str, float]]  # {"int8"|"fp32": {event: ms}}: events naming no one op type
    steps: tuple[FastStep, ...]  # the all-int8 file first, then every file measured
    chosen: int  # index of the written file in steps

    @property
    def written(self) -> FastStep:
        """The file written."""
        return self.steps[self.chosen]

    @property
    def slower_in_int8(self) -> tuple[OpTypeTime, ...]:
        """The op types whose int8 kernels took longer than their float32 ones."""
        return tuple(t for t in self.op_times if t.excess_ms > 0)

    def to_dict(self) -> dict:
        """JSON form."""
        written = self.written
        return {
            "target": self.target,
            "method": self.method,
            "float_ops": list(written.float_ops),
            "vs_fp32": written.vs_fp32,
            "all_int8_vs_fp32": self.steps[0].vs_fp32,
            "slower_than_fp32": written.vs_fp32 > 1.0,
            "goal_sqnr_db": self.goal_sqnr_db,
            "met": written.sqnr_db >= self.goal_sqnr_db,
            "op_times": [{**asdict(t), "excess_ms": t.excess_ms} for t in self.op_times],
            "unattributed_ms": self.unattributed_ms,
            "steps": [step.to_dict() for step in self.steps],
            "chosen": self.chosen,
        }


def write_fast(
    saved_model_dir: Path,
    float_model: bytes,
    feeds: tuple[dict[str, np.ndarray], ...],
    out_path: Path,
    target: FastTarget,
    log_path: Path,
) -> FastChoice:
    """Write the fastest int8 file (on target.timer's target) that keeps the SQNR floor, and how it was chosen.

    One calibration. The target's op profiles of the float32 file (float_model) and of the all-int8
    file give each TFLite op type's time in both; the op types int8 slows by more than MIN_EXCESS_SHARE
    of the all-int8 file's op time are the candidates.
    The file with every candidate in float32 is timed against the float32 file, then each candidate,
    least slowed first, goes back to int8 when the file is no slower without it (a float op between
    int8 ones adds a QUANTIZE and a DEQUANTIZE, which only a whole file's time shows). A file that
    misses the floor plus HELD_OUT_MARGIN_DB on the search samples loses to one that keeps it.
    """
    timer = target.timer
    if timer is None:
        raise ExportError("int8_fast times its files on a target, and none was given; set [export] int8_target")
    try:
        with output_to_log(log_path):
            calibrated = calibrate(saved_model_dir, feeds)
            search, feed = search_feeds(feeds), feeds[0]
            reference = run(float_model, search)
            all_int8 = quantized(calibrated.debugger, [])
            tick(f"export: int8_fast: op times of the float32 and the int8 file on {timer.target}")
            op_times, unattributed = _op_times(timer, all_int8, float_model, feed)
            present = _op_types(calibrated.calibrated_model)
            int8_ms = sum(t.int8_ms for t in op_times) + sum(unattributed["int8"].values())
            candidates = [t.op for t in op_times if t.excess_ms > MIN_EXCESS_SHARE * int8_ms and t.op in present]
            goal = target.min_sqnr_db + HELD_OUT_MARGIN_DB

            def measure(ops: tuple[str, ...]) -> tuple[FastStep, bytes]:
                flatbuffer = quantized(calibrated.debugger, [], ops) if ops else all_int8
                vs_fp32 = timer.ratio(flatbuffer, float_model, feed)
                return FastStep(ops, vs_fp32, sqnr(reference, run(flatbuffer, search)), len(flatbuffer)), flatbuffer

            tick(f"export: int8_fast: {len(candidates)} op types slower in int8, whole files timed on {timer.target}")
            steps, chosen, flatbuffer = _search(measure, candidates, goal)
    except EdgepipeError:
        raise
    except Exception as exc:  # converter, debugger and timers raise many types; all mean the same to a user
        raise ExportError(
            f"{saved_model_dir}: int8_fast export failed: {type(exc).__name__}: {first_line(exc)} "
            f"(details in {log_path})"
        ) from exc
    Path(out_path).write_bytes(flatbuffer)
    return FastChoice(timer.target, timer.method, goal, op_times, unattributed, tuple(steps), chosen)


def _search(measure, candidates: list[str], goal: float) -> tuple[list[FastStep], int, bytes]:
    """(every measured step, the chosen one's index, its bytes).

    All-int8, then all candidates float, then each candidate, least slowed first, put back in int8 when
    the file ranks no worse without it: a file at the goal ranks before one below it, then the faster
    first. A file below the goal is pruned too, as putting an op type back may be what reaches the goal.
    The written file is the best ranked of all measured, all-int8 included (the first on ties)."""

    def rank(step: FastStep) -> tuple[bool, float]:
        return step.sqnr_db < goal, step.vs_fp32

    steps: list[FastStep] = []
    chosen, written = 0, b""

    def measured(ops: tuple[str, ...]) -> FastStep:
        nonlocal chosen, written
        step, flatbuffer = measure(ops)
        steps.append(step)
        if len(steps) == 1 or rank(step) < rank(steps[chosen]):
            chosen, written = len(steps) - 1, flatbuffer
        return step

    measured(())
    if candidates:
        current = measured(tuple(candidates))
        for op in reversed(candidates):
            kept = tuple(o for o in current.float_ops if o != op)
            if kept:  # none left is the all-int8 file, measured first
                trial = measured(kept)
                current = trial if rank(trial) <= rank(current) else current
    return steps, chosen, written


def _op_times(
    timer: Timer, int8: bytes, fp32: bytes, feed: dict[str, np.ndarray]
) -> tuple[tuple[OpTypeTime, ...], dict[str, dict[str, float]]]:
    """Each op type's time in both files, the most slowed by int8 first; and the events naming no op type."""
    int8_ops, int8_other = by_builtin_op(timer.op_times(int8, feed))
    fp32_ops, fp32_other = by_builtin_op(timer.op_times(fp32, feed))
    times = [OpTypeTime(op, int8_ops.get(op, 0.0), fp32_ops.get(op, 0.0)) for op in {*int8_ops, *fp32_ops}]
    return tuple(sorted(times, key=lambda t: (-t.excess_ms, t.op))), {"int8": int8_other, "fp32": fp32_other}


def _op_types(model: bytes) -> set[str]:
    """The TFLite op types of a model's ops."""
    from ai_edge_litert.interpreter import Interpreter

    return {op["op_name"] for op in Interpreter(model_content=model)._get_ops_details()}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
