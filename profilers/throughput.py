"""Offline-mode throughput: samples per second over batch sizes and thread counts, per runtime."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgepipe.models.shared.errors import InputFileError, summary
from edgepipe.profilers.harness import TimingSettings, measure, warm_up
from edgepipe.profilers.runtimes import open_onnxruntime, open_torch
from edgepipe.profilers.stats import PERCENTILE_METHOD

DEFAULT_BATCHES = (1, 4, 16, 64)


@dataclass(frozen=True)
class ThroughputPoint:
    """One (batch, threads) cell of a sweep: measured figures, or why there are none."""

    batch: int
    threads: int
    status: str  # "measured" | "unavailable"
    inferences_per_second: float | None  # samples (not invocations) per second
    p50_ms: float | None  # per invocation, i.e. per batch
    reason: str | None = None  # why unavailable

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


class _Unavailable(Exception):
    """This point cannot run as asked; the message is the reason a report shows."""


# (path, batched feeds, batch, threads) -> (bare invoke for the timing loop, outputs of a first run)
Prepare = Callable[[Path, dict[str, np.ndarray], int, int], tuple[Callable[[], object], list[np.ndarray]]]


def throughput_sweep(
    runtime: str,
    path: Path,
    feeds: dict[str, np.ndarray],
    batches: tuple[int, ...] = DEFAULT_BATCHES,
    threads: tuple[int, ...] | None = None,
    seconds: float = 1.0,
) -> list[ThroughputPoint]:
    """Time every batch x threads point in this process (threads-major, in the order given).

    feeds hold one sample (batch 1) per input, in the layout and dtype the file takes; batch b
    feeds are b copies along axis 0. A point the model cannot run is "unavailable" with the reason.
    """
    if runtime not in _PREPARE:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(_PREPARE)}")
    batches, threads = _checked(batches, "batches"), _checked(threads or _default_threads(), "threads")
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    for name, value in feeds.items():
        if np.ndim(value) < 1 or np.shape(value)[0] != 1:
            raise ValueError(f"feed {name!r} must hold one sample (first dimension 1), got shape {np.shape(value)}")
    settings = _settings(seconds)
    with _torch_threads_kept(runtime):
        return [_point(runtime, Path(path), feeds, b, t, settings) for t in threads for b in batches]


def _default_threads() -> tuple[int, ...]:
    return tuple(range(1, (os.cpu_count() or 1) + 1))


def _checked(values: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Positive integers, duplicates dropped, order kept."""
    values = tuple(dict.fromkeys(values))
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ValueError(f"{what} must be positive integers, got {values!r}")
    return tuple(int(v) for v in values)


def _settings(seconds: float) -> TimingSettings:
    # A large batch may take long per call: a handful of runs plus the wall-clock floor is
    # enough for a rate, and the ceiling only guards against a pathologically slow point.
    return TimingSettings(
        warmup_runs=3,
        warmup_seconds=min(0.2, seconds / 4),
        min_runs=5,
        min_seconds=seconds,
        max_seconds=max(4 * seconds, seconds + 10),
    )


@contextlib.contextmanager
def _torch_threads_kept(runtime: str) -> Iterator[None]:
    """Give back torch's process-wide thread count, which open_torch sets, when the sweep ends."""
    if runtime != "torch":
        yield
        return
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _point(
    runtime: str, path: Path, feeds: dict[str, np.ndarray], batch: int, threads: int, settings: TimingSettings
) -> ThroughputPoint:
    """Prepare, check and time one point."""
    batched = {name: np.concatenate([value] * batch, axis=0) if batch > 1 else value for name, value in feeds.items()}
    try:
        invoke, outputs = _PREPARE[runtime](path, batched, batch, threads)
        # A graph with batch 1 baked into a reshape may still run, folding the batch away.
        if batch > 1 and any(np.ndim(o) < 1 or np.shape(o)[0] != batch for o in outputs):
            raise _Unavailable("outputs did not follow the batch")
    except _Unavailable as exc:
        return ThroughputPoint(batch, threads, "unavailable", None, None, str(exc))
    warm_up(invoke, settings)
    samples, wall_ns = measure(invoke, settings)
    p50 = float(np.percentile(samples / 1e6, 50, method=PERCENTILE_METHOD))
    return ThroughputPoint(batch, threads, "measured", batch * len(samples) / (wall_ns / 1e9), p50)


def _prepare_tflite(path, feeds, batch, threads):
    """A fresh interpreter per point: one that failed to resize is in no state to reuse."""
    interpreter, inputs, outputs = _tflite_interpreter(path, threads)
    missing = set(inputs) - set(feeds)
    if missing:
        raise ValueError(
            f"{path}: no feed for input(s) {', '.join(sorted(missing))}; the file takes {', '.join(inputs)}"
        )
    try:
        if batch > 1:
            for detail in inputs.values():
                interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]], strict=False)
            interpreter.allocate_tensors()
        for name, detail in inputs.items():
            interpreter.set_tensor(detail["index"], feeds[name])
        interpreter.invoke()
    except (RuntimeError, ValueError) as exc:
        raise _Unavailable(summary(exc)) from None
    return interpreter.invoke, [interpreter.get_tensor(d["index"]) for d in outputs.values()]


def _tflite_interpreter(path: Path, threads: int):
    """(interpreter with tensors allocated, input details, output details), both by signature name.

    Falls back to TFLite's built-in kernels when XNNPACK refuses the graph, as runtimes.open_tflite does.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = _allocated(Interpreter, path, threads, OpResolverType.AUTO)
    except (ValueError, RuntimeError) as exc:
        if "XNNPACK" not in str(exc):
            raise InputFileError(f"{path} is not a loadable TFLite model ({summary(exc)})") from None
        try:
            interpreter = _allocated(Interpreter, path, threads, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        except (ValueError, RuntimeError) as again:
            raise InputFileError(f"{path} is not a loadable TFLite model ({summary(again)})") from None
    try:
        runner = interpreter.get_signature_runner()
    except ValueError:  # no signature in the file: tensor names are the only names it has
        return (
            interpreter,
            {d["name"]: d for d in interpreter.get_input_details()},
            {d["name"]: d for d in interpreter.get_output_details()},
        )
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    del runner  # a live signature runner holds views of the interpreter's buffers and blocks invoke()
    return interpreter, inputs, outputs


def _allocated(interpreter_class, path: Path, threads: int, resolver):
    interpreter = interpreter_class(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def _prepare_onnxruntime(path, feeds, batch, threads):
    """Batch b only where the graph leaves the first dimension open; ORT would reject it otherwise."""
    session = open_onnxruntime(path, threads)
    missing = {spec.name for spec in session.inputs} - set(feeds)
    if missing:
        raise ValueError(f"{path}: no feed for input(s) {', '.join(sorted(missing))}")
    for spec in session.inputs:
        fixed = spec.shape[0] if spec.shape else -1  # -1: a symbolic or unset dimension
        if fixed >= 0 and fixed != batch:
            raise _Unavailable(f"the ONNX graph fixes batch {fixed}")
    try:
        outputs = session.run(feeds)
    except Exception as exc:  # ORT raises its own exception type per failure kind
        raise _Unavailable(summary(exc)) from None
    return session.bind(feeds), list(outputs.values())


def _prepare_torch(path, feeds, batch, threads):
    """A program exported with a static batch fails its shape guard, which is the reason given."""
    session = open_torch(path, threads)
    try:
        outputs = session.run(feeds)
    except Exception as exc:  # guards raise AssertionError, kernels RuntimeError, and so on
        message = summary(exc)
        if batch > 1 and "Guard failed" in message:  # torch.export's "input.size()[0] == 1" guard
            message = f"the program was exported with a fixed batch of 1 ({message})"
        raise _Unavailable(message) from None
    return session.bind(feeds), list(outputs.values())


_PREPARE: dict[str, Prepare] = {
    "tflite": _prepare_tflite,
    "onnxruntime": _prepare_onnxruntime,
    "torch": _prepare_torch,
}
