"""int8_mixed's screen: one run of TFLite's debug model beside the calibrated float model gives every
quantized layer's own int8 error and the error the all-int8 model has accumulated at its output.
From these, each layer's local noise: what the layer-groups search (quantize/layer_groups.py) shares
a measured group's output noise by.

A layer's own error (the debugger's layer-direct comparison: its float op and its int8 op run from
the same int8 input) misses a tensor whose damage only shows after the next op: an outlier channel
sets a per-tensor scale that rounds the other channels to zero, yet holds nearly all the tensor's
power, so the tensor itself reads as fine. The accumulated error shows the damage where it
surfaces, at a reader that mixes the channels. That surfacing is charged to the reader and to the
layer that wrote the tensor, since int8 on either of them quantizes the tensor.

Local figures do not say how much of a layer's noise reaches the model's output (a residual branch
with 0 dB of its own may barely move the sum it is added to), so they only share out noise that
was measured at the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_VERIFY_OP = "NumericVerify"  # the debug model's check between a layer's int8 op and its float twin


@dataclass(frozen=True)
class LayerScreen:
    """One quantized layer as the debug run saw it (figures over the samples it was given)."""

    name: str  # output tensor name in the calibrated model; what keep-float (denylisted_nodes) takes
    op: str  # TFLite op, e.g. CONV_2D
    shape: tuple[int, ...]  # output shape (NHWC for image tensors)
    # Own output, float op against int8 op from the same int8 input (the debugger's layer-direct
    # comparison); blind to an outlier channel, whose power masks the loss.
    layer_sqnr_db: float
    rmse_over_scale: float  # RMS of that difference, in the output's quantization steps
    # Signal over the noise charged to this layer: its own error, plus accumulated error (own output in
    # the all-int8 model against the float model) that newly surfaces at it or at a reader of its
    # output beyond that op's own error.
    local_sqnr_db: float


@dataclass(frozen=True)
class _Check:
    """Where the debug model holds one layer's int8 output and its float twin's."""

    name: str
    op: str
    quantized: int  # tensor index of the int8 output in the debug model
    float_twin: int  # tensor index of the float op's output, run from the same int8 input
    scale: float
    zero_point: int
    shape: tuple[int, ...]


def screen(
    debug_model: bytes, calibrated_model: bytes, layers: dict[int, str], feeds: tuple[dict[str, np.ndarray], ...]
) -> list[LayerScreen]:
    """Every layer's local figures, in graph order, from one run of each model on feeds.

    layers maps the debug model's int8 tensor index to the layer's name in the calibrated model,
    whose float run is the reference for the accumulated error.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def interpreter(model: bytes):
        # Every tensor kept for reading after the run; TFLite's own kernels, as int8_mixed's files are run.
        return Interpreter(
            model_content=model,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )

    debug, reference = interpreter(debug_model), interpreter(calibrated_model)
    checks = _checks(debug, layers)
    powers = _powers(debug, reference, checks, feeds)
    accumulated = {c.name: _share(p[2], p[3]) for c, p in zip(checks, powers)}
    own = {c.name: _share(p[0], p[1]) for c, p in zip(checks, powers)}
    charged = _charged_noise(own, accumulated, _readers_of(reference, set(own)))
    return [
        LayerScreen(
            c.name,
            c.op,
            c.shape,
            ratio_db(p[0], p[1]),
            math.sqrt(p[1] / len(feeds)) / c.scale,
            ratio_db(1.0, charged[c.name]),
        )
        for c, p in zip(checks, powers)
    ]


def ratio_db(signal: float, noise: float) -> float:
    """signal / noise in dB; inf without noise, -inf without signal or with infinite noise."""
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 and math.isfinite(noise) else -math.inf


def noise_share(sqnr_db: float) -> float:
    """The noise as a share of the signal that an SQNR in dB stands for (0 for inf, inf for -inf)."""
    if math.isinf(sqnr_db):
        return 0.0 if sqnr_db > 0 else math.inf
    return 10 ** (-sqnr_db / 10)


def _checks(debug, layers: dict[int, str]) -> list[_Check]:
    """Each NumericVerify op's pair of tensors, in graph order."""
    tensors = {t["index"]: t for t in debug.get_tensor_details()}
    ops = debug._get_ops_details()  # the graph's wiring; the interpreter has no public accessor
    producer = {out: op["op_name"] for op in ops for out in op["outputs"]}
    checks = []
    for op in ops:
        if op["op_name"] != _VERIFY_OP:
            continue
        quantized, float_twin = op["inputs"]
        params = tensors[quantized]["quantization_parameters"]
        shape = tuple(int(x) for x in tensors[quantized]["shape"])
        checks.append(
            _Check(
                layers[quantized],
                producer[quantized],
                quantized,
                float_twin,
                float(params["scales"][0]),
                int(params["zero_points"][0]),
                shape,
            )
        )
    return checks


def _powers(debug, reference, checks: list[_Check], feeds) -> np.ndarray:
    """Per layer, summed over feeds: own signal, own noise, accumulated signal, accumulated noise (mean squares)."""
    index = {t["name"]: t["index"] for t in reference.get_tensor_details()}
    run_debug, run_reference = debug.get_signature_runner(), reference.get_signature_runner()
    sums = np.zeros((len(checks), 4))
    for feed in feeds:
        run_debug(**feed)
        run_reference(**feed)
        for row, check in zip(sums, checks):
            int8 = (debug.get_tensor(check.quantized).astype(np.float32) - check.zero_point) * check.scale
            row[:2] += _mean_squares(debug.get_tensor(check.float_twin), int8)
            row[2:] += _mean_squares(reference.get_tensor(index[check.name]), int8)
    return sums


def _mean_squares(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """(signal, noise) as float64 mean squares: expected's, and the difference's."""
    expected = expected.ravel().astype(np.float64)
    difference = expected - got.ravel()
    return np.array([expected @ expected, difference @ difference]) / max(expected.size, 1)


def _share(signal: float, noise: float) -> float:
    """Noise as a share of the signal (inf when there is noise but no signal)."""
    if noise == 0:
        return 0.0
    return noise / signal if signal > 0 else math.inf


def _readers_of(reference, names: set[str]) -> dict[str, tuple[str, ...]]:
    """Each layer -> the layers whose op reads its output, from the calibrated model's wiring."""
    tensor_names = {t["index"]: t["name"] for t in reference.get_tensor_details()}
    readers: dict[str, list[str]] = {name: [] for name in names}
    for op in reference._get_ops_details():  # the graph's wiring; the interpreter has no public accessor
        written = tensor_names[op["outputs"][0]] if op["outputs"] else None
        if written not in names:
            continue
        for read in {tensor_names[i] for i in op["inputs"] if i >= 0} & names:
            readers[read].append(written)
    return {name: tuple(found) for name, found in readers.items()}


def _charged_noise(
    own: dict[str, float], accumulated: dict[str, float], readers: dict[str, tuple[str, ...]]
) -> dict[str, float]:
    """Each layer's own noise share plus the surfacing noise charged to it (see the module's docstring)."""
    inputs: dict[str, list[str]] = {name: [] for name in own}
    for written, found in readers.items():
        for reader in found:
            inputs[reader].append(written)
    # New error at a layer beyond what its inputs carried and beyond its own op's: an input's
    # quantization damage that was masked until this op mixed the channels.
    surfacing = {
        name: max(0.0, accumulated[name] - max((accumulated[i] for i in inputs[name]), default=0.0) - own[name])
        for name in own
    }
    return {name: own[name] + surfacing[name] + sum(surfacing[r] for r in readers[name]) for name in own}
