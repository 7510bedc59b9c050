"""One session protocol over PyTorch, ONNX Runtime and TFLite; RUNTIMES maps names to openers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from models.errors import InputFileError
from models.specs import InputSpec


@dataclass
class Session:
    """A loaded model: its declared inputs, a run() for outputs and a bind() for timing loops."""

    runtime: str
    path: Path
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    bind: Callable[[dict[str, np.ndarray]], Callable[[], object]]
    kernels: str = "default"  # what actually runs the model, e.g. "xnnpack" or "builtin"
    note: str | None = None  # why the kernels differ from what the runtime would normally use


def open_tflite(path: Path, threads: int = 1) -> Session:
    """TFLite through ai_edge_litert, fed by signature input name.

    run() takes real-valued feeds for quantized integer inputs and returns real values for
    quantized integer outputs; bind() sets exactly the arrays it is given, for timing.
    """
    kernels, note = "xnnpack", None
    try:
        interpreter, runner = _load_tflite(path, threads, xnnpack=True)
    except (ValueError, RuntimeError) as exc:
        if "XNNPACK" not in str(exc):
            raise InputFileError(f"{path} is not a loadable TFLite model ({str(exc).strip()[:200]})") from None
        # XNNPACK refuses some valid graphs (certain int8 scale ratios); TFLite's own kernels
        # run them, as a phone's runtime would after the delegate declines.
        kernels, note = "builtin", f"the XNNPACK delegate refused this model ({str(exc).strip()[:160]})"
        try:
            interpreter, runner = _load_tflite(path, threads, xnnpack=False)
        except (ValueError, RuntimeError) as again:
            raise InputFileError(f"{path} is not a loadable TFLite model ({str(again).strip()[:200]})") from None
    in_details, out_details = runner.get_input_details(), runner.get_output_details()
    del runner  # a live signature runner holds views of the interpreter's buffers and blocks invoke()
    inputs = tuple(
        InputSpec(name, tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name, "ND")
        for name, d in in_details.items()
    )

    def bind(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        # Set tensors once so the timed call is the bare interpreter.invoke().
        for name, d in in_details.items():
            interpreter.set_tensor(d["index"], feeds[name])
        return interpreter.invoke

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        bind({name: _to_tensor(value, in_details[name]) if name in in_details else value
              for name, value in feeds.items()})()
        return {name: _from_tensor(interpreter.get_tensor(d["index"]), d) for name, d in out_details.items()}

    return Session("tflite", path, inputs, tuple(out_details), run, bind, kernels, note)


def _load_tflite(path: Path, threads: int, xnnpack: bool):
    """(interpreter with tensors allocated, its default signature runner)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter, interpreter.get_signature_runner()


def _quantized(detail: dict) -> bool:
    """An integer tensor that stands for real values (it has a scale)."""
    return np.issubdtype(np.dtype(detail["dtype"]), np.integer) and detail["quantization"][0] != 0


def _to_tensor(value: np.ndarray, detail: dict) -> np.ndarray:
    """A real-valued feed quantized as the tensor's scale and zero point say; other feeds as given."""
    value = np.asarray(value)
    if not (_quantized(detail) and np.issubdtype(value.dtype, np.floating)):
        return value
    scale, zero_point = detail["quantization"]
    return quantize(value, scale, zero_point, np.dtype(detail["dtype"]))


def _from_tensor(value: np.ndarray, detail: dict) -> np.ndarray:
    """A quantized integer output as float32 real values; any other output as it is."""
    if not _quantized(detail):
        return value
    scale, zero_point = detail["quantization"]
    return dequantize(value, scale, zero_point)


def quantize(value: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """round(value / scale) + zero_point, clipped to dtype's range, as TFLite's QUANTIZE op does it."""
    # float32 arithmetic and ties away from zero (std::round), so a float-I/O model's own
    # QUANTIZE op and this function give the same integers.
    scaled = np.asarray(value, np.float32) / np.float32(scale)
    rounded = np.where(np.abs(scaled - np.trunc(scaled)) == 0.5, np.trunc(scaled) + np.sign(scaled), np.round(scaled))
    info = np.iinfo(dtype)
    return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)


def dequantize(value: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """scale * (value - zero_point) in float32, as TFLite's DEQUANTIZE op does it."""
    return np.float32(scale) * (np.asarray(value).astype(np.float32) - np.float32(zero_point))


def open_onnxruntime(path: Path, threads: int = 1) -> Session:
    """ONNX Runtime on the CPU with full graph optimisation and a fixed intra-op thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types per failure kind
        raise InputFileError(f"{path} is not a loadable ONNX model ({str(exc).strip()[:200]})") from None
    inputs = tuple(
        InputSpec(i.name, tuple(d if isinstance(d, int) else -1 for d in i.shape), _ort_dtype(i.type), "ND")
        for i in session.get_inputs()
    )
    names = tuple(o.name for o in session.get_outputs())

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(None, feeds)))

    def bind(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        return lambda: session.run(None, feeds)

    return Session("onnxruntime", path, inputs, names, run, bind)


def open_torch(path: Path, threads: int = 1) -> Session:
    """A torch.export program (.pt2) run eagerly as its GraphModule."""
    import torch

    torch.set_num_threads(threads)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # a zip or pickle error of any kind means "not a .pt2"
        raise InputFileError(f"{path} is not a loadable torch.export (.pt2) program ({str(exc)[:200]})") from None
    module = program.module()
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = tuple(
        InputSpec(name, tuple(int(s) for s in placeholders[name].meta["val"].shape),
                  str(placeholders[name].meta["val"].dtype).removeprefix("torch."), "ND")
        for name in program.graph_signature.user_inputs
    )
    n_out = len(program.graph_signature.user_outputs)
    names = tuple(f"output_{i}" for i in range(n_out))

    def call(tensors: list) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = module(*tensors)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.numpy() for n, o in zip(names, out)}

    def ordered(feeds: dict[str, np.ndarray]) -> list:
        # torch.export names placeholders after forward()'s parameters ("input" for
        # nn.Sequential), which callers may know by other names: then the order counts.
        arrays = [feeds[s.name] for s in inputs] if all(s.name in feeds for s in inputs) else list(feeds.values())
        if len(arrays) != len(inputs):
            raise ValueError(f"{path}: expected {len(inputs)} inputs, got {len(arrays)}")
        return [torch.from_numpy(a) for a in arrays]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return call(ordered(feeds))

    def bind(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        tensors = ordered(feeds)
        return lambda: call(tensors)

    return Session("torch", path, inputs, names, run, bind)


def _ort_dtype(type_name: str) -> str:
    """'tensor(float)' -> 'float32' and friends."""
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)


RUNTIMES: dict[str, Callable[[Path, int], Session]] = {
    "torch": open_torch,
    "onnxruntime": open_onnxruntime,
    "tflite": open_tflite,
}

# Which runtime a file is for, by its suffix.
RUNTIME_FOR_SUFFIX = {".tflite": "tflite", ".onnx": "onnxruntime", ".pt2": "torch"}
