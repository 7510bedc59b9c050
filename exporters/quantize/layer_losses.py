"""Each layer's int8 loss, from TensorFlow Lite's quantization debugger on one calibrated conversion:
the model's output SQNR when that layer alone runs in int8, its own output's SQNR, and what keeping
it in float32 costs in bytes. int8_mixed (quantize/mixed.py) ranks and keeps layers by these."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.exporters.quantize.variants import configured
from edgepipe.models.shared.errors import ExportError, first_line

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
class Calibrated:
    """A calibrated converter's debugger, the float model and the samples cut into feeds."""

    debugger: Any  # tf.lite.experimental.QuantizationDebugger built from the converter
    float_model: bytes
    feeds: tuple[dict[str, np.ndarray], ...]  # one dict per invocation, by signature input name
    debug_model: bytes  # every layer twice (float and int8) with a NumericVerify check between them
    layers: dict[int, str]  # debug model's quantized tensor index -> layer name


def calibrate(saved_model_dir: Path, float_model: bytes, feeds: tuple[dict[str, np.ndarray], ...]) -> Calibrated:
    """Calibrate int8_mixed's conversion of the SavedModel on feeds (its converter settings from the
    variant table) and attach the debugger; float_model is the fp32 file of the same SavedModel."""
    import tensorflow as tf

    converter = configured(saved_model_dir, "int8_mixed", feeds)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=lambda: iter(()))
    debug_model = debugger.get_debug_quantized_model()
    layers = _layer_names(debug_model, debugger.calibrated_model)
    if len(set(layers.values())) != len(layers):  # a name that matched twice would denylist the wrong layer
        raise ExportError(f"{saved_model_dir}: the debugger's layers do not map one-to-one to the model's tensors")
    if not layers:
        raise ExportError(f"{saved_model_dir}: the int8 conversion quantized no layer, so there is nothing to rank")
    return Calibrated(debugger, float_model, feeds, debug_model, layers)


def layer_losses(calibrated: Calibrated, onnx_path: Path | None) -> list[LayerLoss]:
    """Each layer's loss alone, what keeping it in float costs, and its module; worst first."""
    direct = _direct_statistics(calibrated)
    reference = run(calibrated.float_model, calibrated.feeds)
    names = list(calibrated.layers.values())
    all_int8 = len(quantized(calibrated.debugger, []))
    origins = _origins(calibrated, names, onnx_path)
    losses = []
    for row in direct:
        name = calibrated.layers[int(row["tensor_idx"])]
        # Only this layer in int8: error from other layers cannot mask or add to its own.
        alone = quantized(calibrated.debugger, [n for n in names if n != name])
        losses.append(
            LayerLoss(
                name,
                row["op_name"],
                sqnr(reference, run(alone, calibrated.feeds)),
                math.sqrt(float(row["mean_squared_error"])) / float(row["scale"]),
                _ratio_db(float(row["signal_power"]), float(row["noise_power"])),
                row["shape"],
                len(quantized(calibrated.debugger, [name])) - all_int8,
                origins.get(name),
            )
        )
    order = {name: i for i, name in enumerate(names)}
    return sorted(losses, key=lambda loss: (loss.sqnr_db, order[loss.name]))


def _origins(calibrated: Calibrated, names: list[str], onnx_path: Path | None) -> dict[str, str]:
    """Layer -> PyTorch module; a label only, so a graph it cannot read leaves the layers unnamed (said in the log)."""
    if onnx_path is None:
        return {}
    from edgepipe.exporters.quantize.layer_origin import torch_origins

    try:
        return torch_origins(calibrated.debugger.calibrated_model, names, onnx_path)
    except Exception as exc:  # the ranking stands without names
        print(f"int8 sensitivity: layers not matched to modules: {type(exc).__name__}: {first_line(exc)}")
        return {}


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


def _direct_statistics(calibrated: Calibrated) -> list[dict]:
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


def quantized(debugger: Any, keep_float: list[str]) -> bytes:
    """The int8 model (float I/O) with the given layers left in float."""
    import tensorflow as tf

    # Setting options re-quantizes the calibrated model; calibration is not repeated.
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep_float or None)
    return debugger.get_nondebug_quantized_model()


def run(model: bytes, feeds: tuple[dict[str, np.ndarray], ...]) -> list[np.ndarray]:
    """Every output of every feed, concatenated per output name in sorted order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # TFLite's own kernels: XNNPACK refuses some int8 scale ratios that a mixed model can have.
    interpreter = Interpreter(
        model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    runner = interpreter.get_signature_runner()
    results = [runner(**feed) for feed in feeds]
    return [np.concatenate([r[name] for r in results]).astype(np.float64) for name in sorted(results[0])]


def sqnr(reference: list[np.ndarray], got: list[np.ndarray]) -> float:
    """SQNR in dB over all outputs together."""
    signal = sum(float(np.sum(r**2)) for r in reference)
    noise = sum(float(np.sum((r - g) ** 2)) for r, g in zip(reference, got))
    return _ratio_db(signal, noise)


def _ratio_db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf
