"""Per-op time profiles (count, total ms and share by op type) from ONNX Runtime's and LiteRT's own profilers."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgepipe.models.shared.errors import InputFileError, ProfileError

# A fresh session's first runs are slow (caches, arenas, clock ramp-up): measured on the 8x8 digits CNN,
# ONNX Runtime's op times summed to 1.5x the harness latency after 5 warm-up runs, 1.09-1.14x after 50.
WARMUP_RUNS = 50


@dataclass(frozen=True)
class OpTime:
    """One op type's time in one inference."""

    op_type: str  # as the runtime names it: Conv, CONV_2D, or an XNNPACK operator ("Convolution (NHWC, F32) IGEMM")
    count: int  # op instances in one inference
    total_ms: float  # per inference, summed over the instances
    share: float  # of the summed op time


@dataclass(frozen=True)
class OpProfile:
    """Where one inference spends its time, by op type, slowest first."""

    runtime: str  # "tflite" | "onnxruntime"
    source: str  # how the times were obtained
    runs: int
    ops: tuple[OpTime, ...]
    op_total_ms: float  # sum of op times per inference
    wall_ms: float  # mean wall time per inference, timed around each profiled run

    def to_dict(self) -> dict:
        """JSON form."""
        return {**asdict(self), "ops": [asdict(op) for op in self.ops]}


def profile_ops(runtime: str, path: Path, feeds: dict[str, np.ndarray], threads: int = 1, runs: int = 50) -> OpProfile:
    """Profile `runs` inferences (after at least WARMUP_RUNS unrecorded ones) and total the time by op type."""
    if runtime not in _PROFILERS:
        raise ProfileError(f"per-op profiling supports {', '.join(_PROFILERS)}, not {runtime!r}")
    if runs < 1 or threads < 1:
        raise ProfileError(f"per-op profiling needs runs >= 1 and threads >= 1 (got runs={runs}, threads={threads})")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path} does not exist or is not a file")
    source, events, walls_ns = _PROFILERS[runtime](path, feeds, threads, runs)
    return _summarise(runtime, source, runs, events, walls_ns, path)


def _summarise(
    runtime: str, source: str, runs: int, events: list[tuple[str, float]], walls_ns: list[int], path: Path
) -> OpProfile:
    """Per-inference totals by op type from (op type, microseconds) events of all measured runs."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for op_type, micros in events:
        by_type[op_type].append(micros)
    uneven = sorted(t for t, times in by_type.items() if len(times) % runs)
    if uneven:
        # Fixed feeds run the same ops every time: a remainder means the profiler lost events.
        raise ProfileError(
            f"{path}: the {runtime} profiler recorded an uneven number of {uneven[0]} events over "
            f"{runs} runs, so its per-op times cannot be trusted"
        )
    op_total_us = sum(sum(times) for times in by_type.values())
    if op_total_us <= 0:
        raise ProfileError(
            f"{path}: the {runtime} profiler recorded no op time (every op is below its "
            "1 microsecond resolution, or the model has no ops)"
        )
    ops = (
        OpTime(t, len(times) // runs, sum(times) / runs / 1e3, sum(times) / op_total_us) for t, times in by_type.items()
    )
    ops = tuple(sorted(ops, key=lambda op: (-op.total_ms, op.op_type)))
    return OpProfile(runtime, source, runs, ops, op_total_us / runs / 1e3, float(np.mean(walls_ns)) / 1e6)


# --- ONNX Runtime ----------------------------------------------------------------------------------


def _profile_onnxruntime(
    path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int
) -> tuple[str, list[tuple[str, float]], list[int]]:
    """Kernel events of ONNX Runtime's JSON profile, written to a private directory and read back."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgepipe-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "ort")  # never the cwd
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
        session, error = None, ""
        with _native_log():  # a session that fails to load still reports on fd 2 that it wrote no profile
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # ORT raises its own exception types per failure kind
                error = _one_line(exc)
        if session is None:
            raise InputFileError(f"{path} is not a loadable ONNX model ({error})")
        walls: list[int] = []
        try:
            for _ in range(WARMUP_RUNS):
                session.run(None, feeds)
            for _ in range(runs):
                start = time.perf_counter_ns()
                session.run(None, feeds)
                walls.append(time.perf_counter_ns() - start)
        except Exception as exc:  # wrong feed names, dtypes or shapes
            raise ProfileError(f"{path}: ONNX Runtime could not run the feeds ({_one_line(exc)})") from None
        finally:
            written = Path(session.end_profiling())
        events = json.loads(written.read_text())
    return "onnxruntime profiling JSON (Node events)", _ort_kernel_events(events, runs, path), walls


def _ort_kernel_events(events: list[dict], runs: int, path: Path) -> list[tuple[str, float]]:
    """(op type, microseconds) of every kernel run during the measured runs."""
    # The profiler cannot be started late, so the warm-up runs are in the file too: every
    # run leaves one model_run event, and the measured runs begin at the first of theirs.
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(starts) != WARMUP_RUNS + runs:
        raise ProfileError(f"{path}: the ONNX Runtime profile holds {len(starts)} runs, expected {WARMUP_RUNS + runs}")
    first = starts[WARMUP_RUNS]
    return [
        (e["args"]["op_name"], float(e["dur"]))
        for e in events
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= first
    ]


# --- TFLite through LiteRT's C API -------------------------------------------------------------------
# The Python Interpreter has no profiler, but the libLiteRt.so that ai_edge_litert ships exports
# LiteRT's C API, whose CompiledModel owns a profiler when its runtime options ask for one. The
# declarations and struct layouts below are those of LiteRT's litert/c headers at tag v2.1.0
# (the source of ai-edge-litert 2.1.0; these headers are unchanged in v2.1.1 and differ from
# v2.1.2 on). A wrong layout crashes the process, so other versions are refused, not guessed.
_LITERT_VERIFIED = ("2.1.0", "2.1.1")
_LITERT_SOURCE = (
    "LiteRT profiler events (libLiteRt.so C API, LiteRT v2.1.0 headers): XNNPACK operator "
    "timings for ops the CPU accelerator delegates, TFLite kernel events for the rest"
)
_EVENT_BUFFER = 2048  # events the CompiledModel's profiler holds (compiled_model.cc); later ones are dropped
# LiteRtProfilerEventType: OPERATOR_INVOKE_EVENT (a TFLite kernel), DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT (an op in
# a delegate that profiles per operator, XNNPACK, whose node then records no event of its own). Not
# DELEGATE_OPERATOR_INVOKE_EVENT (1 << 2): it nests in a node event that is already counted.
_OP_EVENTS = (1 << 1, 1 << 3)
_HW_ACCELERATOR_CPU, _LOCK_WRITE = 1, 1  # kLiteRtHwAcceleratorCpu, kLiteRtTensorBufferLockModeWrite
_NUMPY_DTYPE = {
    1: "float32",
    2: "int32",
    3: "uint8",
    4: "int64",
    6: "bool",
    7: "int16",
    9: "int8",
    10: "float16",
    11: "float64",
}  # LiteRtElementType -> numpy


class _ProfiledEventData(ctypes.Structure):
    _fields_ = [
        ("tag", ctypes.c_char_p),
        ("event_type", ctypes.c_int),
        ("start_timestamp_us", ctypes.c_uint64),
        ("elapsed_time_us", ctypes.c_uint64),
        ("begin_mem_usage", ctypes.c_size_t * 3),  # LiteRtMemoryUsage
        ("end_mem_usage", ctypes.c_size_t * 3),
        ("event_metadata1", ctypes.c_uint64),
        ("event_metadata2", ctypes.c_uint64),
        ("event_source", ctypes.c_int),
    ]


class _RankedTensorType(ctypes.Structure):
    # LiteRtLayout's `unsigned int rank : 7; bool has_strides : 1;` share one 32-bit word.
    _fields_ = [
        ("element_type", ctypes.c_int),
        ("rank_bits", ctypes.c_uint32),
        ("dimensions", ctypes.c_int32 * 8),
        ("strides", ctypes.c_uint32 * 8),
    ]


_H, _I, _Z, _S = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p
_OUT, _ZP, _SP = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_char_p)
_C_API: dict[str, tuple] = {  # name: (restype, argtypes)
    "LiteRtGetStatusString": (_S, [_I]),
    "LiteRtCreateEnvironment": (_I, [_I, _H, _OUT]),
    "LiteRtDestroyEnvironment": (None, [_H]),
    "LiteRtCreateModelFromFile": (_I, [_S, _OUT]),
    "LiteRtDestroyModel": (None, [_H]),
    "LiteRtGetModelSignature": (_I, [_H, _Z, _OUT]),
    "LiteRtGetNumSignatureInputs": (_I, [_H, _ZP]),
    "LiteRtGetNumSignatureOutputs": (_I, [_H, _ZP]),
    "LiteRtGetSignatureInputName": (_I, [_H, _Z, _SP]),
    "LiteRtGetSignatureOutputName": (_I, [_H, _Z, _SP]),
    "LiteRtGetSignatureInputTensorByIndex": (_I, [_H, _Z, _OUT]),
    "LiteRtGetSignatureOutputTensorByIndex": (_I, [_H, _Z, _OUT]),
    "LiteRtGetRankedTensorType": (_I, [_H, ctypes.POINTER(_RankedTensorType)]),
    "LiteRtCreateOptions": (_I, [_OUT]),
    "LiteRtDestroyOptions": (None, [_H]),
    "LiteRtSetOptionsHardwareAccelerators": (_I, [_H, _I]),
    "LiteRtAddOpaqueOptions": (_I, [_H, _H]),
    "LiteRtDestroyOpaqueOptions": (None, [_H]),
    "LiteRtCreateRuntimeOptions": (_I, [_OUT]),
    "LiteRtFindRuntimeOptions": (_I, [_H, _OUT]),
    "LiteRtSetRuntimeOptionsEnableProfiling": (_I, [_H, ctypes.c_bool]),
    "LiteRtCreateCpuOptions": (_I, [_OUT]),
    "LiteRtFindCpuOptions": (_I, [_H, _OUT]),
    "LiteRtSetCpuOptionsNumThread": (_I, [_H, _I]),
    "LiteRtCreateCompiledModel": (_I, [_H, _H, _H, _OUT]),
    "LiteRtDestroyCompiledModel": (None, [_H]),
    "LiteRtGetCompiledModelInputBufferRequirements": (_I, [_H, _Z, _Z, _OUT]),
    "LiteRtGetCompiledModelOutputBufferRequirements": (_I, [_H, _Z, _Z, _OUT]),
    "LiteRtCreateManagedTensorBufferFromRequirements": (_I, [_H, ctypes.POINTER(_RankedTensorType), _H, _OUT]),
    "LiteRtDestroyTensorBuffer": (None, [_H]),
    "LiteRtGetTensorBufferPackedSize": (_I, [_H, _ZP]),
    "LiteRtLockTensorBuffer": (_I, [_H, _OUT, _I]),
    "LiteRtUnlockTensorBuffer": (_I, [_H]),
    "LiteRtRunCompiledModel": (_I, [_H, _Z, _Z, _H, _Z, _H]),
    "LiteRtCompiledModelGetProfiler": (_I, [_H, _OUT]),
    "LiteRtStartProfiler": (_I, [_H]),
    "LiteRtStopProfiler": (_I, [_H]),
    "LiteRtGetNumProfilerEvents": (_I, [_H, ctypes.POINTER(_I)]),
    "LiteRtGetProfilerEvents": (_I, [_H, _I, ctypes.POINTER(_ProfiledEventData)]),
}
_Api = dict[str, Callable]


class _LiteRtCallFailed(ProfileError):
    """A LiteRT C API call returned an error status."""


def _litert_api() -> _Api:
    """The C functions above, bound from the libLiteRt.so next to the installed ai_edge_litert."""
    from importlib import metadata

    import ai_edge_litert

    version = metadata.version("ai-edge-litert")
    if version not in _LITERT_VERIFIED:
        raise ProfileError(
            f"per-op profiling of TFLite files needs ai-edge-litert {' or '.join(_LITERT_VERIFIED)} "
            f"(whose LiteRT C API layouts were verified), found {version}"
        )
    library = Path(ai_edge_litert.__file__).parent / "libLiteRt.so"
    try:
        lib = ctypes.CDLL(str(library))
        functions = {name: getattr(lib, name) for name in _C_API}
    except (OSError, AttributeError) as exc:
        raise ProfileError(f"per-op profiling of TFLite files needs LiteRT's C API in {library} ({exc})") from None
    for name, (restype, argtypes) in _C_API.items():
        functions[name].restype, functions[name].argtypes = restype, argtypes
    return functions


def _call(api: _Api, name: str, *args) -> None:
    """Call a status-returning C function; an error status raises with its name."""
    status = api[name](*args)
    if status != 0:
        text = api["LiteRtGetStatusString"](status)
        raise _LiteRtCallFailed(f"{name} failed with {text.decode() if text else status}")


def _new(api: _Api, name: str, *args) -> ctypes.c_void_p:
    """Call a C function that returns a handle (or pointer) through its last argument."""
    handle = ctypes.c_void_p()
    _call(api, name, *args, ctypes.byref(handle))
    return handle


def _profile_tflite(
    path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int
) -> tuple[str, list[tuple[str, float]], list[int]]:
    """Op events of LiteRT's CompiledModel profiler on the CPU accelerator (XNNPACK, as a phone runs it)."""
    api = _litert_api()
    with contextlib.ExitStack() as stack:  # releases every handle, last made first
        try:
            env, model, compiled = _compile(api, stack, path, threads)
            signature = _new(api, "LiteRtGetModelSignature", model, 0)  # the default signature
            inputs = _buffers(api, stack, env, compiled, signature, "Input")
            if sorted(inputs) != sorted(feeds):
                raise ProfileError(f"{path}: feeds are named {sorted(feeds)}, the signature's inputs {list(inputs)}")
            for name, (buffer, tensor_type) in inputs.items():
                _fill(api, buffer, tensor_type, np.asarray(feeds[name]), f"{path}: input {name}")
            outputs = [b for b, _ in _buffers(api, stack, env, compiled, signature, "Output").values()]
            in_array = (ctypes.c_void_p * len(inputs))(*[b for b, _ in inputs.values()])
            out_array = (ctypes.c_void_p * len(outputs))(*outputs)

            def run() -> None:
                _call(api, "LiteRtRunCompiledModel", compiled, 0, len(inputs), in_array, len(outputs), out_array)

            with _native_log() as log:  # XNNPACK prepares the graph in the first run, and may refuse it then
                try:
                    run()
                except _LiteRtCallFailed as exc:
                    raise ProfileError(
                        f"{path}: LiteRT's compiled model could not run it on the CPU accelerator "
                        f"({_first_error(log(), exc)}) and has no fallback to TFLite's own kernels"
                    ) from None
            profiler = _new(api, "LiteRtCompiledModelGetProfiler", compiled)
            if not profiler.value:
                raise ProfileError(f"{path}: LiteRT's compiled model has no profiler although profiling was enabled")
            return _LITERT_SOURCE, *_measure(api, profiler, run, runs, path)
        except _LiteRtCallFailed as exc:
            raise ProfileError(f"{path}: LiteRT could not run the model ({exc})") from None


def _compile(api: _Api, stack: contextlib.ExitStack, path: Path, threads: int) -> tuple[ctypes.c_void_p, ...]:
    """(environment, model, compiled model) on the CPU accelerator with profiling on; released by stack."""
    with _native_log() as log:  # LiteRT logs every step of this to fd 2
        env = _new(api, "LiteRtCreateEnvironment", 0, None)
        # Released with fd 2 captured too (it logs its accelerators' release); a contextmanager decorates.
        stack.callback(_native_log()(api["LiteRtDestroyEnvironment"]), env)
        try:
            model = _new(api, "LiteRtCreateModelFromFile", str(path).encode())
        except _LiteRtCallFailed as exc:
            raise InputFileError(f"{path} is not a loadable TFLite model ({_first_error(log(), exc)})") from None
        stack.callback(api["LiteRtDestroyModel"], model)
        options = _new(api, "LiteRtCreateOptions")
        stack.callback(api["LiteRtDestroyOptions"], options)  # the caller keeps ownership (litert_compiled_model.h)
        _call(api, "LiteRtSetOptionsHardwareAccelerators", options, _HW_ACCELERATOR_CPU)
        _add_options(api, options, "Runtime", "LiteRtSetRuntimeOptionsEnableProfiling", True)
        _add_options(api, options, "Cpu", "LiteRtSetCpuOptionsNumThread", threads)
        try:
            compiled = _new(api, "LiteRtCreateCompiledModel", env, model, options)
        except _LiteRtCallFailed as exc:
            # LiteRT's CPU path always applies XNNPACK; a graph it refuses cannot be compiled here.
            raise ProfileError(
                f"{path}: LiteRT could not compile the model for its CPU accelerator ({_first_error(log(), exc)})"
            ) from None
    stack.callback(api["LiteRtDestroyCompiledModel"], compiled)
    return env, model, compiled


def _add_options(api: _Api, options: ctypes.c_void_p, kind: str, setter: str, value) -> None:
    """Create Runtime or Cpu opaque options, set one value and hand them to options, which then own them."""
    opaque = _new(api, f"LiteRtCreate{kind}Options")
    try:
        _call(api, setter, _new(api, f"LiteRtFind{kind}Options", opaque), value)
        _call(api, "LiteRtAddOpaqueOptions", options, opaque)
    except _LiteRtCallFailed:
        api["LiteRtDestroyOpaqueOptions"](opaque)
        raise


def _buffers(
    api: _Api,
    stack: contextlib.ExitStack,
    env: ctypes.c_void_p,
    compiled: ctypes.c_void_p,
    signature: ctypes.c_void_p,
    role: str,
) -> dict[str, tuple[ctypes.c_void_p, _RankedTensorType]]:
    """Name -> (buffer the compiled model accepts, tensor type) for each signature Input or Output."""
    count, found = ctypes.c_size_t(), {}
    _call(api, f"LiteRtGetNumSignature{role}s", signature, ctypes.byref(count))
    for i in range(count.value):
        name, tensor_type = ctypes.c_char_p(), _RankedTensorType()
        _call(api, f"LiteRtGetSignature{role}Name", signature, i, ctypes.byref(name))
        tensor = _new(api, f"LiteRtGetSignature{role}TensorByIndex", signature, i)
        _call(api, "LiteRtGetRankedTensorType", tensor, ctypes.byref(tensor_type))
        requirements = _new(api, f"LiteRtGetCompiledModel{role}BufferRequirements", compiled, 0, i)
        buffer = _new(
            api, "LiteRtCreateManagedTensorBufferFromRequirements", env, ctypes.byref(tensor_type), requirements
        )
        stack.callback(api["LiteRtDestroyTensorBuffer"], buffer)
        found[name.value.decode()] = (buffer, tensor_type)
    return found


def _fill(api: _Api, buffer: ctypes.c_void_p, tensor_type: _RankedTensorType, feed: np.ndarray, what: str) -> None:
    """Copy a feed into a buffer after checking it has the tensor's dtype, shape and size."""
    shape = tuple(tensor_type.dimensions[: tensor_type.rank_bits & 0x7F])
    dtype = _NUMPY_DTYPE.get(tensor_type.element_type, f"LiteRT element type {tensor_type.element_type}")
    size, address, data = ctypes.c_size_t(), ctypes.c_void_p(), np.ascontiguousarray(feed)
    _call(api, "LiteRtGetTensorBufferPackedSize", buffer, ctypes.byref(size))
    if feed.dtype.name != dtype or feed.shape != shape or size.value != data.nbytes:  # the size guards the memmove
        raise ProfileError(
            f"{what} takes {dtype} {list(shape)} ({size.value} bytes), "
            f"the feed is {feed.dtype.name} {list(feed.shape)} ({data.nbytes} bytes)"
        )
    _call(api, "LiteRtLockTensorBuffer", buffer, ctypes.byref(address), _LOCK_WRITE)
    ctypes.memmove(address, data.ctypes.data, data.nbytes)
    _call(api, "LiteRtUnlockTensorBuffer", buffer)


def _measure(
    api: _Api, profiler: ctypes.c_void_p, run: Callable[[], None], runs: int, path: Path
) -> tuple[list[tuple[str, float]], list[int]]:
    """Warm up unprofiled, then profile `runs` runs in batches that fit the profiler's event buffer."""
    for _ in range(WARMUP_RUNS):
        run()
    _, _, per_run = _profiled_batch(api, profiler, run, 1, path)  # one run sizes the batches
    batch = max(1, _EVENT_BUFFER // max(per_run, 1) - 1)  # one run of headroom
    events, walls = [], []
    while len(walls) < runs:
        got, times, _ = _profiled_batch(api, profiler, run, min(batch, runs - len(walls)), path)
        events += got
        walls += times
    return events, walls


def _profiled_batch(
    api: _Api, profiler: ctypes.c_void_p, run: Callable[[], None], runs: int, path: Path
) -> tuple[list[tuple[str, float]], list[int], int]:
    """(op events, wall ns per run, number of events of any kind) of `runs` profiled runs."""
    _call(api, "LiteRtStartProfiler", profiler)  # also empties the buffer
    walls, clock = [], time.perf_counter_ns
    for _ in range(runs):
        start = clock()
        run()
        walls.append(clock() - start)
    _call(api, "LiteRtStopProfiler", profiler)
    count = ctypes.c_int()
    _call(api, "LiteRtGetNumProfilerEvents", profiler, ctypes.byref(count))
    if count.value >= _EVENT_BUFFER:
        raise ProfileError(
            f"{path}: one inference makes more events than LiteRT's profiler keeps ({_EVENT_BUFFER}); "
            "it drops the rest, so per-op times would be incomplete"
        )
    events = (_ProfiledEventData * max(count.value, 1))()  # LiteRtGetProfilerEvents refuses an empty array
    _call(api, "LiteRtGetProfilerEvents", profiler, max(count.value, 1), events)
    # Tags point into the profiler's buffer, so they are copied before the next batch reuses it.
    ops = [
        (e.tag.decode(errors="replace"), float(e.elapsed_time_us))
        for e in events[: count.value]
        if e.event_type in _OP_EVENTS
    ]
    return ops, walls, count.value


@contextlib.contextmanager
def _native_log() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 to a temporary file; yields a reader of what native code wrote there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _first_error(log: str, exc: Exception) -> str:
    """The first ERROR line LiteRT logged (the cause; later ones are consequences), else the failed call."""
    return ([line.strip()[:200] for line in log.splitlines() if line.startswith("ERROR")] or [str(exc)])[0]


def _one_line(exc: Exception) -> str:
    """An exception's message on one line, shortened."""
    return " ".join(str(exc).split())[:200]


_PROFILERS = {"tflite": _profile_tflite, "onnxruntime": _profile_onnxruntime}
