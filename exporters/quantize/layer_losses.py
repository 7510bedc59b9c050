"""Each layer's int8 loss for int8_mixed, from TensorFlow Lite's quantization debugger on one calibrated
conversion: every layer's local figures (quantize/layer_screen.py), its output noise alone estimated by
measured groups of layers (quantize/layer_groups.py) and, for the few layers estimated worst, two
whole-file measurements: the model's output SQNR when that layer alone runs in int8, and how much
the file grows when it alone stays float32. int8_mixed (quantize/mixed.py) keeps layers in float32
by these."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.exporters.quantize.layer_screen import LayerScreen, noise_share, ratio_db
from edgepipe.exporters.quantize.variants import configured
from edgepipe.models.shared.errors import ExportError, first_line

_VERIFY_PREFIX = "NumericVerify/"  # TFLite's debug model names each check NumericVerify/<quantized tensor>:<index>


@dataclass(frozen=True)
class LayerLoss:
    """One quantizable layer's int8 loss, as measured on the search samples."""

    name: str  # the layer's output tensor name in the converted model; what keep_float takes
    op: str  # TFLite op, e.g. CONV_2D
    shape: tuple[int, ...]  # the layer's output shape (NHWC for image tensors)
    layer_sqnr_db: float  # own output's SQNR, float op and int8 op from the same input (LayerScreen)
    rmse_over_scale: float  # the debugger's figure: RMS error at the layer's output in quantization steps
    local_sqnr_db: float  # signal over the noise charged to it locally (LayerScreen)
    # The model output's SQNR (dB) with only this layer in int8, estimated: its smallest measured
    # group's output noise, shared by local noise (layer_groups). The measured layers are picked by it.
    estimated_sqnr_db: float
    # Measured for the layers estimated worst, None for the rest (not measured): the model output's
    # SQNR (dB) against the float model when this layer alone runs in int8 (its input and output
    # tensors quantized, everything else float), and how much the int8 file grows when this layer
    # alone stays float32.
    sqnr_db: float | None = None
    float_bytes: int | None = None
    module: str | None = None  # the PyTorch module it comes from (exporters.layer_origin), when that can be told

    @property
    def measured(self) -> bool:
        """Whether the whole-file figures (sqnr_db, float_bytes) were measured for this layer."""
        return self.sqnr_db is not None

    @property
    def loss_per_byte(self) -> float | None:
        """The output noise (as a share of the signal) that keeping this layer in float removes, per byte it
        costs; None when not measured."""
        if self.sqnr_db is None or self.float_bytes is None:
            return None
        return noise_share(self.sqnr_db) / max(self.float_bytes, 1)

    def to_dict(self) -> dict:
        """JSON form; a figure that is infinite (no error at all) or not measured becomes None."""
        out = asdict(self)
        for key in ("sqnr_db", "rmse_over_scale", "layer_sqnr_db", "local_sqnr_db", "estimated_sqnr_db"):
            out[key] = out[key] if out[key] is not None and math.isfinite(out[key]) else None
        out["shape"] = list(self.shape)
        out["measured"] = self.measured
        return out


@dataclass(frozen=True)
class Calibrated:
    """A calibrated converter's debugger and its debug model."""

    debugger: Any  # tf.lite.experimental.QuantizationDebugger built from the converter
    debug_model: bytes  # every layer twice (float and int8) with a NumericVerify check between them
    layers: dict[int, str]  # debug model's quantized tensor index -> layer name

    @property
    def calibrated_model(self) -> bytes:
        """The float model with the calibrated ranges, the one every quantized file is made from."""
        return self.debugger.calibrated_model


def calibrate(saved_model_dir: Path, feeds: tuple[dict[str, np.ndarray], ...]) -> Calibrated:
    """Calibrate int8_mixed's conversion of the SavedModel on feeds (its converter settings from the
    variant table) and attach the debugger."""
    import tensorflow as tf

    converter = configured(saved_model_dir, "int8_mixed", feeds)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=lambda: iter(()))
    debug_model = debugger.get_debug_quantized_model()
    layers = _layer_names(debug_model, debugger.calibrated_model)
    if len(set(layers.values())) != len(layers):  # a name that matched twice would denylist the wrong layer
        raise ExportError(f"{saved_model_dir}: the debugger's layers do not map one-to-one to the model's tensors")
    if not layers:
        raise ExportError(f"{saved_model_dir}: the int8 conversion quantized no layer, so there is nothing to rank")
    return Calibrated(debugger, debug_model, layers)


@dataclass
class WholeFiles:
    """Whole-file measurements from one calibration: each a re-quantization, most also a run on feeds
    against the float model's outputs there (reference)."""

    calibrated: Calibrated
    feeds: tuple[dict[str, np.ndarray], ...]
    reference: list[np.ndarray]
    all_int8: bytes = field(init=False)  # every layer in int8: the file sizes are told against it
    _only_int8: dict[frozenset, float] = field(default_factory=dict, init=False, repr=False)  # measured once each

    def __post_init__(self):
        self.all_int8 = quantized(self.calibrated.debugger, [])

    def keeping_float(self, layers: tuple[str, ...]) -> tuple[float, bytes]:
        """The output SQNR (dB) with these layers in float32 and the rest int8, and that file."""
        flatbuffer = quantized(self.calibrated.debugger, list(layers)) if layers else self.all_int8
        return sqnr(self.reference, run(flatbuffer, self.feeds)), flatbuffer

    def only_int8_sqnr(self, layers: tuple[str, ...]) -> float:
        """The output SQNR (dB) with only these layers in int8, everything else float32."""
        key = frozenset(layers)
        if key not in self._only_int8:
            others = [name for name in self.calibrated.layers.values() if name not in key]
            self._only_int8[key] = self.keeping_float(tuple(others))[0]
        return self._only_int8[key]

    def float_bytes(self, layer: str) -> int:
        """How much the int8 file grows when this layer alone stays float32."""
        return len(quantized(self.calibrated.debugger, [layer])) - len(self.all_int8)


def layer_losses(
    screens: list[LayerScreen],
    estimated: dict[str, float],
    to_measure: list[str],
    files: WholeFiles,
    origins: dict[str, str],
) -> list[LayerLoss]:
    """Every layer's loss with its module (origins) and estimate (output noise share alone), the to_measure
    layers measured whole-file; worst first, measured layers before the others."""
    losses = []
    for place, screened in enumerate(screens):
        figures = asdict(screened)
        figures["estimated_sqnr_db"] = ratio_db(1.0, estimated[screened.name])
        if screened.name in to_measure:
            figures["sqnr_db"] = files.only_int8_sqnr((screened.name,))
            figures["float_bytes"] = files.float_bytes(screened.name)
        losses.append((place, LayerLoss(**figures, module=origins.get(screened.name))))
    # Measured layers by their output SQNR; the rest after them, by the estimate; graph order on ties.
    ranked = sorted(losses, key=lambda item: (not item[1].measured, _rank_key(item[1]), item[0]))
    return [loss for _, loss in ranked]


def _rank_key(loss: LayerLoss) -> float:
    return loss.sqnr_db if loss.sqnr_db is not None else loss.estimated_sqnr_db


def module_origins(calibrated: Calibrated, names: list[str], onnx_path: Path | None) -> dict[str, str]:
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


def quantized(debugger: Any, keep_float: list[str], keep_float_ops: tuple[str, ...] = ()) -> bytes:
    """The int8 model (float I/O) with the given layers, and every op of the given TFLite op types, left in float."""
    import tensorflow as tf

    # Setting options re-quantizes the calibrated model; calibration is not repeated.
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=keep_float or None, denylisted_ops=list(keep_float_ops) or None
    )
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
    return ratio_db(signal, noise)
