"""Which layers int8 quantization hurts, and an int8 TFLite export that keeps chosen layers in float."""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.exporters.tflite_convert import calibration_feeds
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import EdgepipeError, ExportError, first_line
from edgepipe.models.shared.files import write_atomic

_VERIFY_PREFIX = "NumericVerify/"  # TFLite's debug model names each check NumericVerify/<quantized tensor>:<index>


@dataclass(frozen=True)
class LayerLoss:
    """One quantizable layer's int8 loss, as measured on the given samples."""

    name: str  # the layer's output tensor name in the converted model; what keep_float takes
    op: str  # TFLite op, e.g. CONV_2D
    # Model output SQNR (dB) against the float model when this layer alone runs in int8 (its
    # input and output tensors quantized, everything else float). Ranking key: lowest first.
    sqnr_db: float
    rmse_over_scale: float  # the debugger's figure: RMS error at the layer's output in quantization steps
    # SQNR (dB) at the layer's own output, float op and int8 op run from the same input (the
    # debugger's layer-direct comparison). Blind to an outlier channel: its power masks the loss.
    layer_sqnr_db: float
    shape: tuple[int, ...]  # the layer's output shape (NHWC for image tensors)
    float_bytes: int  # how much the int8 file grows when this layer alone stays float32
    module: str | None = None  # the PyTorch module it comes from (exporters.layer_origin), when that can be told

    @property
    def loss_per_byte(self) -> float:
        """The output noise (as a share of the signal) that keeping this layer in float removes, per byte it costs."""
        noise = 10 ** (-self.sqnr_db / 10) if math.isfinite(self.sqnr_db) else (math.inf if self.sqnr_db < 0 else 0.0)
        return noise / max(self.float_bytes, 1)

    def to_dict(self) -> dict:
        """JSON form; a figure that is infinite (no error at all) becomes None."""
        out = asdict(self)
        for key in ("sqnr_db", "rmse_over_scale", "layer_sqnr_db"):
            out[key] = out[key] if math.isfinite(out[key]) else None
        out["shape"] = list(self.shape)
        return out


@dataclass(frozen=True)
class _Calibrated:
    """A calibrated converter's debugger, the float model and the samples cut into feeds."""

    debugger: Any  # tf.lite.experimental.QuantizationDebugger built from the converter
    float_model: bytes
    feeds: tuple[dict[str, np.ndarray], ...]  # one dict per invocation, by signature input name
    debug_model: bytes  # every layer twice (float and int8) with a NumericVerify check between them
    layers: dict[int, str]  # debug model's quantized tensor index -> layer name


@dataclass(frozen=True)
class MixedStep:
    """One int8_mixed candidate that was kept: these layers in float32, the rest int8."""

    float_layers: tuple[str, ...]
    sqnr_db: float  # model output against the float model, on the calibration samples
    size_bytes: int

    def to_dict(self) -> dict:
        """JSON form; an infinite SQNR (no error at all) becomes None."""
        return {
            "float_layers": list(self.float_layers),
            "sqnr_db": self.sqnr_db if math.isfinite(self.sqnr_db) else None,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class MixedChoice:
    """Which layers int8_mixed keeps in float32 and the trail that led there."""

    target_sqnr_db: float  # the SQNR floor plus HELD_OUT_MARGIN_DB
    max_float_layers: int
    steps: tuple[MixedStep, ...]  # from all-int8 to the file written: layers added, then layers found unneeded

    @property
    def kept_float(self) -> tuple[str, ...]:
        """The written file's float32 layers."""
        return self.steps[-1].float_layers

    @property
    def met(self) -> bool:
        """Whether the written file reaches the target."""
        return self.steps[-1].sqnr_db >= self.target_sqnr_db

    def to_dict(self) -> dict:
        """JSON form."""
        return {
            "target_sqnr_db": self.target_sqnr_db,
            "max_float_layers": self.max_float_layers,
            "met": self.met,
            "steps": [step.to_dict() for step in self.steps],
        }


# The choice is measured on the calibration samples; the ledger judges other samples against
# PyTorch, where the same file reads a little differently. The floor is aimed at with this margin.
HELD_OUT_MARGIN_DB = 1.0


def layer_sensitivity(
    saved_model_dir: Path, samples: dict[str, np.ndarray], log_path: Path, onnx_path: Path | None = None
) -> list[LayerLoss]:
    """Every quantized layer's int8 loss alone (model output SQNR with only it in int8), worst first.

    With the ONNX file the SavedModel was translated from, each layer also names its PyTorch module.
    """
    saved_model_dir, log_path = Path(saved_model_dir), Path(log_path)
    try:
        with output_to_log(log_path):
            return _losses(_calibrate(saved_model_dir, samples), onnx_path)
    except EdgepipeError:
        raise
    except Exception as exc:  # converter and debugger raise many types; all mean the same to a user
        raise _failure(saved_model_dir, "int8 sensitivity analysis", exc, log_path) from exc


def export_to_floor(
    saved_model_dir: Path,
    samples: dict[str, np.ndarray],
    out_path: Path,
    log_path: Path,
    min_sqnr_db: float,
    max_float_layers: int,
    onnx_path: Path | None = None,
) -> tuple[list[LayerLoss], MixedChoice]:
    """The int8 model (float32 I/O) that keeps few layers in float32 and reaches min_sqnr_db.

    Layers are added in order of the output noise they remove per byte they cost in float
    (LayerLoss.loss_per_byte), each step measured, until the SQNR against the float model
    reaches min_sqnr_db + HELD_OUT_MARGIN_DB or max_float_layers are float. Then every kept
    layer is dropped again whose removal still leaves the target reached (a layer that costs
    no bytes ranks first even when it removes little noise). Returns every layer's loss
    (worst first) and the choice; the file is written atomically.
    """
    saved_model_dir, out_path, log_path = Path(saved_model_dir), Path(out_path), Path(log_path)
    try:
        with output_to_log(log_path):
            calibrated = _calibrate(saved_model_dir, samples)
            losses = _losses(calibrated, onnx_path)
            reference = _run(calibrated.float_model, calibrated.feeds)
            target = min_sqnr_db + HELD_OUT_MARGIN_DB

            def measured(layers: tuple[str, ...]) -> tuple[MixedStep, bytes]:
                flatbuffer = _quantized(calibrated.debugger, list(layers))
                return MixedStep(
                    layers, _sqnr(reference, _run(flatbuffer, calibrated.feeds)), len(flatbuffer)
                ), flatbuffer

            # Never every layer: that is the fp32 file with extra steps.
            ranked = sorted(losses, key=lambda loss: -loss.loss_per_byte)[: min(max_float_layers, len(losses) - 1)]
            step, flatbuffer = measured(())
            steps = [step]
            for loss in ranked:
                if steps[-1].sqnr_db >= target:
                    break
                step, flatbuffer = measured((*steps[-1].float_layers, loss.name))
                steps.append(step)
            if steps[-1].sqnr_db >= target:
                least_noise_first = sorted(losses, key=lambda loss: -loss.sqnr_db)
                for loss in [loss for loss in least_noise_first if loss.name in steps[-1].float_layers]:
                    trial, trial_flatbuffer = measured(tuple(n for n in steps[-1].float_layers if n != loss.name))
                    if trial.sqnr_db >= target:
                        steps.append(trial)
                        flatbuffer = trial_flatbuffer
    except EdgepipeError:
        raise
    except Exception as exc:
        raise _failure(saved_model_dir, "mixed-precision export", exc, log_path) from exc
    write_atomic(out_path, flatbuffer)
    return losses, MixedChoice(target, max_float_layers, tuple(steps))


def export_mixed(
    saved_model_dir: Path,
    samples: dict[str, np.ndarray],
    keep_float: list[str],
    out_path: Path,
    log_path: Path,
) -> Path:
    """An int8 model (float32 I/O) with the named layers kept in float; written atomically."""
    saved_model_dir, out_path, log_path = Path(saved_model_dir), Path(out_path), Path(log_path)
    try:
        with output_to_log(log_path):
            calibrated = _calibrate(saved_model_dir, samples)
            _check_names(saved_model_dir, list(keep_float), list(calibrated.layers.values()))
            flatbuffer = _quantized(calibrated.debugger, list(keep_float))
    except EdgepipeError:
        raise
    except Exception as exc:
        raise _failure(saved_model_dir, "mixed-precision export", exc, log_path) from exc
    write_atomic(out_path, flatbuffer)
    return out_path


def _losses(calibrated: _Calibrated, onnx_path: Path | None) -> list[LayerLoss]:
    """Each layer's loss alone, what keeping it in float costs, and its module; worst first."""
    direct = _direct_statistics(calibrated)
    reference = _run(calibrated.float_model, calibrated.feeds)
    names = list(calibrated.layers.values())
    all_int8 = len(_quantized(calibrated.debugger, []))
    origins = _origins(calibrated, names, onnx_path)
    losses = []
    for row in direct:
        name = calibrated.layers[int(row["tensor_idx"])]
        # Only this layer in int8: error from other layers cannot mask or add to its own.
        alone = _quantized(calibrated.debugger, [n for n in names if n != name])
        losses.append(
            LayerLoss(
                name,
                row["op_name"],
                _sqnr(reference, _run(alone, calibrated.feeds)),
                math.sqrt(float(row["mean_squared_error"])) / float(row["scale"]),
                _ratio_db(float(row["signal_power"]), float(row["noise_power"])),
                row["shape"],
                len(_quantized(calibrated.debugger, [name])) - all_int8,
                origins.get(name),
            )
        )
    order = {name: i for i, name in enumerate(names)}
    return sorted(losses, key=lambda loss: (loss.sqnr_db, order[loss.name]))


def _origins(calibrated: _Calibrated, names: list[str], onnx_path: Path | None) -> dict[str, str]:
    """Layer -> PyTorch module; a label only, so a graph it cannot read leaves the layers unnamed (said in the log)."""
    if onnx_path is None:
        return {}
    from edgepipe.exporters.layer_origin import torch_origins

    try:
        return torch_origins(calibrated.debugger.calibrated_model, names, onnx_path)
    except Exception as exc:  # the ranking stands without names
        print(f"int8 sensitivity: layers not matched to modules: {type(exc).__name__}: {first_line(exc)}")
        return {}


def _calibrate(saved_model_dir: Path, samples: dict[str, np.ndarray]) -> _Calibrated:
    """Convert the SavedModel to float, calibrate an int8 conversion on samples and attach the debugger."""
    import tensorflow as tf

    if not (saved_model_dir / "saved_model.pb").exists():
        raise ExportError(f"{saved_model_dir}: no saved_model.pb there; give the folder onnx2tf wrote")
    float_model = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
    feeds = calibration_feeds(str(saved_model_dir), samples, _signature_inputs(float_model))

    def representative():
        yield from (dict(feed) for feed in feeds)

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative  # float I/O: inference types stay float32
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=lambda: iter(()))
    debug_model = debugger.get_debug_quantized_model()
    layers = _layer_names(debug_model, debugger.calibrated_model)
    if len(set(layers.values())) != len(layers):  # a name that matched twice would denylist the wrong layer
        raise ExportError(f"{saved_model_dir}: the debugger's layers do not map one-to-one to the model's tensors")
    if not layers:
        raise ExportError(f"{saved_model_dir}: the int8 conversion quantized no layer, so there is nothing to rank")
    return _Calibrated(debugger, float_model, feeds, debug_model, layers)


def _signature_inputs(model: bytes) -> dict[str, dict]:
    """The default SignatureDef's input details by name."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model).get_signature_runner().get_input_details()


def _layer_names(debug_model: bytes, calibrated_model: bytes) -> dict[int, str]:
    """Each checked layer's quantized tensor index in the debug model -> its name in the calibrated model.

    The debug model holds a float and an int8 copy of every layer, so the converter appended
    a digit to the int8 copy's tensor name (Mean -> Mean1); the calibrated model's name is the
    one the quantizer matches in denylisted_nodes.
    """
    from ai_edge_litert.interpreter import Interpreter

    known = {t["name"] for t in Interpreter(model_content=calibrated_model).get_tensor_details()}
    layers = {}
    for tensor in Interpreter(model_content=debug_model).get_tensor_details():
        if not tensor["name"].startswith(_VERIFY_PREFIX):
            continue
        quantized, index = tensor["name"][len(_VERIFY_PREFIX) :].rsplit(":", 1)
        name = next((n for n in (quantized[:-1], quantized) if n in known), None)
        if name is None:
            raise ExportError(f"cannot match the debugger's layer {quantized!r} to a tensor of the converted model")
        layers[int(index)] = name
    return layers


def _direct_statistics(calibrated: _Calibrated) -> list[dict]:
    """The debugger's per-layer rows (op_name, tensor_idx, scale, metrics), each with its output shape.

    A debugger built from the debug model keeps every tensor alive, which the layer-direct
    metrics need: they read each layer's float result after the whole model has run.
    """
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    debug_model = calibrated.debug_model
    order = _input_order(debug_model)

    def dequantized(q, scale, zero_point):
        return scale * (q.astype(np.float64) - zero_point)

    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={
            "signal_power": lambda f, q, s, z: float(np.mean(f.astype(np.float64) ** 2)),
            "noise_power": lambda f, q, s, z: float(np.mean((f - dequantized(q, s, z)) ** 2)),
        }
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=debug_model,
        debug_options=options,
        debug_dataset=lambda: ([feed[name] for name in order] for feed in calibrated.feeds),
    )
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    tensors = Interpreter(model_content=debug_model).get_tensor_details()
    shapes = {t["index"]: tuple(int(x) for x in t["shape"]) for t in tensors}
    rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
    return [{**row, "shape": shapes[int(row["tensor_idx"])]} for row in rows]


def _input_order(model: bytes) -> list[str]:
    """Signature input names in the order the interpreter lists its inputs (how the debugger feeds them)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    by_index = {d["index"]: name for name, d in interpreter.get_signature_runner().get_input_details().items()}
    return [by_index[d["index"]] for d in interpreter.get_input_details()]


def _quantized(debugger: Any, keep_float: list[str]) -> bytes:
    """The int8 model (float I/O) with the given layers left in float."""
    import tensorflow as tf

    # Setting options re-quantizes the calibrated model; calibration is not repeated.
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep_float or None)
    return debugger.get_nondebug_quantized_model()


def _run(model: bytes, feeds: tuple[dict[str, np.ndarray], ...]) -> list[np.ndarray]:
    """Every output of every feed, concatenated per output name in sorted order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # TFLite's own kernels: XNNPACK refuses some int8 scale ratios that a mixed model can have.
    interpreter = Interpreter(
        model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    runner = interpreter.get_signature_runner()
    results = [runner(**feed) for feed in feeds]
    return [np.concatenate([r[name] for r in results]).astype(np.float64) for name in sorted(results[0])]


def _sqnr(reference: list[np.ndarray], got: list[np.ndarray]) -> float:
    """SQNR in dB over all outputs together."""
    signal = sum(float(np.sum(r**2)) for r in reference)
    noise = sum(float(np.sum((r - g) ** 2)) for r, g in zip(reference, got))
    return _ratio_db(signal, noise)


def _ratio_db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def _check_names(saved_model_dir: Path, keep_float: list[str], names: list[str]) -> None:
    """Every name must be a layer the debugger reports; all of them float leaves nothing to quantize."""
    unknown = [n for n in keep_float if n not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ExportError(
            f"{saved_model_dir}: keep_float names unknown layer(s) {', '.join(map(repr, unknown[:3]))}; "
            f"{hint}layers include {', '.join(map(repr, names[:3]))} (layer_sensitivity lists all)"
        )
    if set(names) <= set(keep_float):
        raise ExportError(f"{saved_model_dir}: keep_float names every quantized layer; use the fp32 export instead")


def _failure(saved_model_dir: Path, what: str, exc: Exception, log_path: Path) -> ExportError:
    first = first_line(exc)
    return ExportError(f"{saved_model_dir}: {what} failed: {type(exc).__name__}: {first} (details in {log_path})")
