"""One session protocol over PyTorch, ONNX Runtime and TFLite; RUNTIMES maps names to openers."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgepipe.models.shared.errors import ConfigError, InputFileError, ProfileError, first_line, summary
from edgepipe.models.shared.specs import InputSpec

# ORT's graph optimisation levels by the names a job file or the CLI uses.
ORT_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime is opened: TFLite's XNNPACK delegate, ORT's graph optimisation, the batch size."""

    xnnpack: bool = True  # False: TFLite's built-in kernels only (BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ort_optimization: str = "all"  # a key of ORT_OPTIMIZATION
    batch: int | None = None  # every input's first dimension; None keeps the model's own

    def __post_init__(self) -> None:
        if self.ort_optimization not in ORT_OPTIMIZATION:
            raise ConfigError(
                f"ONNX Runtime optimization level (--ort-optimization / ort_optimization) "
                f"{self.ort_optimization!r} is unknown; "
                f"choose one of {', '.join(ORT_OPTIMIZATION)}"
            )
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"batch {self.batch} is not a positive size; give a batch of 1 or more")


@dataclass
class Session:
    """A loaded model: its declared inputs, a run() for outputs and a bind() for timing loops."""

    runtime: str
    path: Path
    inputs: tuple[InputSpec, ...]  # -1 marks a dimension the model leaves open
    output_names: tuple[str, ...]
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    bind: Callable[[dict[str, np.ndarray]], Callable[[], object]]
    kernels: str = "default"  # what actually runs the model, e.g. "xnnpack" or "builtin"
    note: str | None = None  # why the kernels differ from what the runtime would normally use
    library: str = ""  # the package and version that ran the model, e.g. "ai_edge_litert 2.1.0"
    # (scale, zero point) of each quantized integer input, which bind() takes as integers
    quantization: dict[str, tuple[float, int]] = field(default_factory=dict)
    shapes_declared: bool = True  # False for TorchScript: inputs have names but no recorded shape or dtype


def open_tflite(path: Path, threads: int = 1, options: RuntimeOptions = RuntimeOptions()) -> Session:
    """TFLite through ai_edge_litert (or tflite_runtime where only that is installed), fed by signature name.

    run() takes real-valued feeds for quantized integer inputs and returns real values for
    quantized integer outputs; bind() sets exactly the arrays it is given, for timing.
    """
    loader = _tflite_library()
    kernels, note = ("xnnpack", None) if options.xnnpack else ("builtin", "XNNPACK turned off by request")
    try:
        interpreter, runner = _load_tflite(loader, path, threads, options.xnnpack, options.batch)
    except (ValueError, RuntimeError) as exc:
        if not (options.xnnpack and "XNNPACK" in str(exc)):
            raise InputFileError(f"{path} is not a loadable TFLite model ({str(exc).strip()[:200]})") from None
        # XNNPACK refuses some valid graphs (certain int8 scale ratios); TFLite's own kernels
        # run them, as a phone's runtime would after the delegate declines.
        kernels, note = "builtin", f"the XNNPACK delegate refused this model ({str(exc).strip()[:160]})"
        try:
            interpreter, runner = _load_tflite(loader, path, threads, False, options.batch)
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
        bind(
            {
                name: _to_tensor(value, in_details[name]) if name in in_details else value
                for name, value in feeds.items()
            }
        )()
        return {name: _from_tensor(interpreter.get_tensor(d["index"]), d) for name, d in out_details.items()}

    quantization = {
        name: (float(d["quantization"][0]), int(d["quantization"][1]))
        for name, d in in_details.items()
        if _quantized(d)
    }
    return Session("tflite", path, inputs, tuple(out_details), run, bind, kernels, note, loader[2], quantization)


def _tflite_library() -> tuple[type, type, str]:
    """(Interpreter, OpResolverType, "package version"): ai_edge_litert, else tflite_runtime as on edge boards."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        return Interpreter, OpResolverType, f"ai_edge_litert {_version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType

        return Interpreter, OpResolverType, f"tflite_runtime {_version('tflite-runtime')}"
    except ImportError:
        raise ProfileError(
            "no TFLite interpreter: neither ai_edge_litert nor tflite_runtime can be imported; "
            "install one ('pip install ai-edge-litert', or 'pip install tflite-runtime' "
            "on a board without wheels for it)"
        ) from None


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # imported from a source tree or a vendored copy
        return "unknown version"


def _load_tflite(loader: tuple, path: Path, threads: int, xnnpack: bool, batch: int | None):
    """(interpreter with tensors allocated, its default signature runner)."""
    interpreter_class, resolvers, _ = loader
    resolver = resolvers.AUTO if xnnpack else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = interpreter_class(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    try:
        interpreter.allocate_tensors()
    except RuntimeError as exc:
        # Select-TF (Flex) ops run on TensorFlow's kernels, which the interpreter links once TensorFlow is
        # loaded in the process; a fresh process (the converter ran in a child) has not loaded it yet.
        if "Select TensorFlow op" not in str(exc) or "tensorflow" in sys.modules or not _tensorflow_loads():
            raise
        interpreter = interpreter_class(
            model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver
        )
        interpreter.allocate_tensors()
    if batch is not None:
        _resize_batch(interpreter, path, batch)
    return interpreter, interpreter.get_signature_runner()


def _tensorflow_loads() -> bool:
    """Import TensorFlow (it brings the Flex kernels); False where it is not installed, as on edge boards."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def _resize_batch(interpreter, path: Path, batch: int) -> None:
    """Every input's first dimension set to batch, then tensors allocated again."""
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()
    del runner
    try:
        for name, d in details.items():
            if len(d["shape"]) == 0:
                raise ValueError(f"input {name!r} is a scalar with no batch dimension")
            interpreter.resize_tensor_input(d["index"], [batch, *d["shape"][1:]], strict=False)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        if "XNNPACK" in str(exc):
            raise  # the delegate refused the resized graph: open_tflite falls back to builtin kernels
        raise ConfigError(
            f"{path} cannot take batch {batch} ({summary(exc)}); "
            "profile it at its own batch size or export it with a dynamic batch"
        ) from None


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


def open_onnxruntime(path: Path, threads: int = 1, options: RuntimeOptions = RuntimeOptions()) -> Session:
    """ONNX Runtime on the CPU with the graph optimisation asked for and a fixed intra-op thread count."""
    import onnxruntime as ort

    settings = ort.SessionOptions()
    settings.intra_op_num_threads = threads
    settings.inter_op_num_threads = 1
    settings.log_severity_level = 3
    settings.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPTIMIZATION[options.ort_optimization])
    try:
        session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types per failure kind
        raise InputFileError(f"{path} is not a loadable ONNX model ({str(exc).strip()[:200]})") from None
    inputs = tuple(
        InputSpec(i.name, tuple(d if isinstance(d, int) else -1 for d in i.shape), _ort_dtype(i.type), "ND")
        for i in session.get_inputs()
    )
    if options.batch is not None:
        inputs = tuple(_with_batch(spec, options.batch, path) for spec in inputs)
    names = tuple(o.name for o in session.get_outputs())

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(None, feeds)))

    def bind(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        return lambda: session.run(None, feeds)

    return Session(
        "onnxruntime",
        path,
        inputs,
        names,
        run,
        bind,
        f"cpu, optimization {options.ort_optimization}",
        library=f"onnxruntime {ort.__version__}",
    )


def open_onnx_reference(path: Path, threads: int = 1, options: RuntimeOptions = RuntimeOptions()) -> Session:
    """The onnx package's reference evaluator: the ONNX specification run in Python, slow but exact. For a
    file ONNX Runtime cannot load (an IR or opset newer than it supports, an op it lacks); never timed."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        model = onnx.load(str(path))
        evaluator = ReferenceEvaluator(model)
    except Exception as exc:  # the evaluator raises its own types per failure kind
        raise InputFileError(f"{path} cannot be run by onnx.reference either ({first_line(exc)[:200]})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = tuple(
        InputSpec(
            v.name,
            tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim),
            onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
            "ND",
        )
        for v in model.graph.input
        if v.name not in initializers
    )
    names = tuple(o.name for o in model.graph.output)

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, evaluator.run(None, feeds)))

    def bind(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        return lambda: evaluator.run(None, feeds)

    return Session("onnx.reference", path, inputs, names, run, bind, "python", library=f"onnx {onnx.__version__}")


def _with_batch(spec: InputSpec, batch: int, path: Path) -> InputSpec:
    """spec with its first dimension set to batch, where the graph leaves that dimension open."""
    if not spec.shape:
        raise ConfigError(f"{path}: input {spec.name!r} is a scalar with no batch dimension to set to {batch}")
    if spec.shape[0] not in (-1, batch):
        raise ConfigError(
            f"{path}: input {spec.name!r} has a fixed batch of {spec.shape[0]} (shape {list(spec.shape)}), "
            f"so it cannot run at batch {batch}; export the model with a dynamic first dimension"
        )
    return InputSpec(spec.name, (batch, *spec.shape[1:]), spec.dtype, spec.layout)


def open_torch(path: Path, threads: int = 1, options: RuntimeOptions = RuntimeOptions()) -> Session:
    """A torch.export program (.pt2) run eagerly as its GraphModule; other suffixes are TorchScript."""
    import torch

    torch.set_num_threads(threads)
    if Path(path).suffix != ".pt2":
        return _open_torchscript(path, options)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # a zip or pickle error of any kind means "not a .pt2"
        raise InputFileError(f"{path} is not a loadable torch.export (.pt2) program ({str(exc)[:200]})") from None
    module = program.module()
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = tuple(
        InputSpec(
            name,
            tuple(s if isinstance(s, int) else -1 for s in placeholders[name].meta["val"].shape),
            str(placeholders[name].meta["val"].dtype).removeprefix("torch."),
            "ND",
        )
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

    if options.batch is not None:
        inputs = tuple(InputSpec(s.name, (options.batch, *s.shape[1:]), s.dtype, s.layout) for s in inputs)
        _check_torch_batch(run, inputs, options.batch, path)
    return Session("torch", path, inputs, names, run, bind, "eager", library=f"torch {torch.__version__}")


def _open_torchscript(path: Path, options: RuntimeOptions) -> Session:
    """A TorchScript module (torch.jit.save): inputs named after forward()'s parameters, shapes from the caller."""
    import torch

    if options.batch is not None:
        raise ConfigError(
            f"--batch: {path} is TorchScript, which records no input shapes; "
            "give arrays of the batch you want with --inputs"
        )
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # zip, pickle and TorchScript errors all mean "not a TorchScript module"
        raise InputFileError(
            f"{path} is not a TorchScript module ({summary(exc)[:160]}); save one with "
            "torch.jit.save, or a program with torch.export.save (.pt2): a state dict holds "
            "no code to run"
        ) from None
    names = tuple(a.name for a in module.forward.schema.arguments[1:])  # [0] is self
    inputs = tuple(InputSpec(name, (), "float32", "ND") for name in names)

    def call(tensors: list) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = module(*tensors)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {f"output_{i}": o.numpy() for i, o in enumerate(out)}

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return call([torch.from_numpy(np.asarray(feeds[n])) for n in names])

    def bind(feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        tensors = [torch.from_numpy(np.asarray(feeds[n])) for n in names]
        return lambda: call(tensors)

    return Session(
        "torch", path, inputs, (), run, bind, "torchscript", library=f"torch {torch.__version__}", shapes_declared=False
    )


def _check_torch_batch(run: Callable, inputs: tuple[InputSpec, ...], batch: int, path: Path) -> None:
    """Run zeros at the batch asked for: a program exported with a static batch fails its shape guard."""
    if any(not s.shape or min(s.shape) < 0 for s in inputs):
        return  # open dimensions: the caller's own inputs decide whether it runs
    try:
        run({s.name: np.zeros(s.shape, s.dtype) for s in inputs})
    except Exception as exc:  # guards raise AssertionError, kernels RuntimeError, and so on
        raise ConfigError(
            f"{path} does not run at batch {batch} ({summary(exc)}); "
            "export the program with a dynamic batch dimension or profile it at its own batch"
        ) from None


def _ort_dtype(type_name: str) -> str:
    """'tensor(float)' -> 'float32' and friends."""
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)


# Every opener takes (path, threads=1, options=RuntimeOptions()).
RUNTIMES: dict[str, Callable[..., Session]] = {
    "torch": open_torch,
    "onnxruntime": open_onnxruntime,
    "tflite": open_tflite,
}

# Which runtime a file is for, by its suffix.
RUNTIME_FOR_SUFFIX = {
    ".tflite": "tflite",
    ".onnx": "onnxruntime",
    ".pt2": "torch",
    ".pt": "torch",
    ".ts": "torch",
    ".torchscript": "torch",
}
