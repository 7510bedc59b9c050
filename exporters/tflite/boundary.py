"""Give the written TFLite file the ONNX model's input and output shapes where onnx2tf changed them.

onnx2tf's Keras model sometimes takes or gives a tensor in a shape that is neither the ONNX shape
nor its channels-last form: a scalar becomes (1,), a 2-D tensor comes out transposed. The file's
serving function then reshapes or transposes at its boundary (tflite/write.py). A reshape
that only adds or drops unit axes is certain; any other reshape or transpose is chosen by evidence:
the Keras model run on seeded inputs must reproduce ONNX Runtime's outputs under it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgepipe.exporters.tflite.evidence import Evidence, agrees
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.specs import InputSpec, channels_last

LOG_PREFIX = "edgepipe: boundary: "  # each fix is one line of the conversion log after this
MAX_TRIALS = 64  # combinations of input readings tried against ONNX Runtime
MAX_PERMUTED_RANK = 5


@dataclass(frozen=True)
class BoundaryFix:
    """What the file does at one input or output so that it takes or gives the ONNX shape."""

    name: str
    role: str  # "input" or "output"
    onnx_shape: tuple[int, ...]
    model_shape: tuple[int, ...]  # what onnx2tf's model takes or gives; -1 where it is unknown
    op: str  # "reshape" or "transpose"
    perm: tuple[int, ...] = ()  # transpose: input model = onnx.transpose(perm); output onnx = model.transpose(perm)

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)

    def apply(self, tensor):
        """The tensor on the other side of the boundary (ONNX -> model for inputs, model -> ONNX for outputs)."""
        import tensorflow as tf

        if self.op == "transpose":
            return tf.transpose(tensor, self.perm)
        return tf.reshape(tensor, self.model_shape if self.role == "input" else self.onnx_shape)


@dataclass(frozen=True)
class Bounded:
    """onnx2tf's Keras model with the fixes that make it take and give the ONNX shapes."""

    keras: object
    input_names: tuple[str, ...] = ()  # the ONNX name of each Keras input, in order
    output_names: tuple[str, ...] = ()  # the ONNX name of each Keras output, in order
    fixes: tuple[BoundaryFix, ...] = ()

    def fix(self, role: str, index: int) -> BoundaryFix | None:
        """The fix at the index-th Keras input or output, if any."""
        names = self.input_names if role == "input" else self.output_names
        name = names[index] if index < len(names) else None
        return next((f for f in self.fixes if f.role == role and f.name == name), None)

    def input_shapes(self) -> list[tuple]:
        """The shape the file takes at each Keras input, in order (None where unknown)."""
        return [
            fix.onnx_shape if (fix := self.fix("input", i)) else tuple(t.shape) for i, t in enumerate(self.keras.inputs)
        ]

    def __call__(self, inputs: list) -> list:
        """The model's outputs, in order, for inputs in the shapes input_shapes() gives."""
        fed = [fix.apply(x) if (fix := self.fix("input", i)) else x for i, x in enumerate(inputs)]
        outputs = self.keras(fed)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return [fix.apply(y) if (fix := self.fix("output", i)) else y for i, y in enumerate(outputs)]


def fit_boundary(
    keras,
    inputs: tuple[InputSpec, ...],
    outputs: tuple[InputSpec, ...],
    kept: set[str],
    evidence: Evidence,
    log_path: Path,
) -> Bounded:
    """Keras model plus the reshapes and transposes that give it the ONNX boundary; none where shapes already fit."""
    if len(keras.inputs) != len(inputs) or len(keras.outputs) != len(outputs):
        return Bounded(keras)  # write_saved_model and the signature check report the mismatch
    bounded = Bounded(keras, tuple(s.name for s in inputs), tuple(o.name for o in outputs))
    in_shapes = [_shape(t) for t in keras.inputs]
    out_shapes = [_shape(t) for t in keras.outputs]
    wrong_in = [not _fits_any(k, s, s.name not in kept) for k, s in zip(in_shapes, inputs)]
    wrong_out = [not _fits_any(k, s, True) for k, s in zip(out_shapes, outputs)]
    if not any(wrong_in + wrong_out):
        return bounded
    certain = tuple(
        f
        for f in (
            *(_unit_reshape(s, k, "input") for k, s, w in zip(in_shapes, inputs, wrong_in) if w),
            *(_unit_reshape(s, k, "output") for k, s, w in zip(out_shapes, outputs, wrong_out) if w),
        )
        if f
    )
    with output_to_log(log_path):
        found, note = _by_evidence(keras, evidence, inputs, outputs, in_shapes, out_shapes, wrong_out, kept)
    fixes = certain if found is None else found
    _log(log_path, fixes, note)
    return Bounded(keras, bounded.input_names, bounded.output_names, fixes)


def _by_evidence(keras, evidence: Evidence, inputs, outputs, in_shapes, out_shapes, wrong_out, kept) -> tuple:
    """(fixes, note): the first readings under which Keras reproduces ONNX Runtime on seeded inputs, or None."""
    if evidence.outputs is None:
        return (
            None,
            f"ONNX Runtime could not run the model ({evidence.unavailable}), so only unit-axis reshapes are made",
        )
    feeds = evidence.feeds
    reference = [evidence.outputs[o.name] for o in outputs]
    in_options = [_input_readings(s, k, s.name not in kept) for s, k in zip(inputs, in_shapes)]
    out_options = [_output_readings(s, k) if w else [None] for s, k, w in zip(outputs, out_shapes, wrong_out)]
    dtypes = [t.dtype.as_numpy_dtype for t in keras.inputs]
    for combo in itertools.islice(itertools.product(*in_options), MAX_TRIALS):
        got = _run_keras(keras, inputs, in_shapes, dtypes, combo, feeds)
        if got is None:
            continue
        chosen = [_matching(options, y, ref) for options, y, ref in zip(out_options, got, reference)]
        if all(c is not False for c in chosen):
            return tuple(f for f in (*combo, *chosen) if f), "checked against ONNX Runtime on seeded inputs"
    return None, "no reshape or transpose reproduced ONNX Runtime's outputs on seeded inputs"


def _input_readings(spec: InputSpec, shape: tuple, may_be_channels_last: bool) -> list:
    """None (fed as edgepipe records it) when the shape fits, else its reshapes; then every other
    transpose that fits."""
    fits = _fits_any(shape, spec, may_be_channels_last)
    unit = None if fits else _unit_reshape(spec, shape, "input")
    readings: list = [None] if fits else [unit] if unit else []
    as_recorded = {tuple(range(len(spec.shape)))} | (
        {_channels_last_perm(len(spec.shape))} if may_be_channels_last else set()
    )
    readings += [
        BoundaryFix(spec.name, "input", spec.shape, _known(shape), "transpose", p)
        for p in _perms(len(spec.shape))
        if p not in as_recorded and _fits(tuple(spec.shape[i] for i in p), shape)
    ]
    if not fits and not unit and _resolved(shape, math.prod(spec.shape)) is not None:
        readings.append(BoundaryFix(spec.name, "input", spec.shape, _known(shape), "reshape"))
    return readings


def _output_readings(spec: InputSpec, shape: tuple) -> list:
    """Every reshape and transpose of a wrong-shaped output that gives the ONNX shape."""
    unit = _unit_reshape(spec, shape, "output")
    readings = [unit] if unit else []
    readings += [
        BoundaryFix(spec.name, "output", spec.shape, _known(shape), "transpose", p)
        for p in _perms(len(shape))
        if _fits(spec.shape, tuple(shape[i] for i in p))
    ]
    if not unit and -1 not in spec.shape:
        readings.append(BoundaryFix(spec.name, "output", spec.shape, _known(shape), "reshape"))
    return readings


def _matching(options: list, got: np.ndarray, reference: np.ndarray):
    """The first reading of an output that reproduces the reference (None: as it is, or channels-last), or False."""
    for option in options:
        if option is None:
            readings = [got] + ([np.moveaxis(got, -1, 1)] if 3 <= got.ndim <= 5 else [])
        else:
            try:
                readings = [np.asarray(option.apply(got))]
            except Exception:  # the reshape does not fit this output's size
                continue
        if any(agrees(r, reference) for r in readings):
            return option
    return False


def _run_keras(keras, inputs, in_shapes, dtypes, combo, feeds) -> list[np.ndarray] | None:
    """Keras outputs for ONNX-shaped feeds under one combination of input readings."""
    model_feeds = []
    for spec, shape, dtype, fix in zip(inputs, in_shapes, dtypes, combo):
        value = feeds[spec.name]
        if fix is None and not _fits(tuple(spec.shape), shape):  # taken channels-last, as edgepipe feeds it
            value = np.moveaxis(value, 1, -1)
        model_feeds.append(np.ascontiguousarray(np.asarray(fix.apply(value)) if fix else value, dtype=dtype))
    try:
        outputs = keras(model_feeds)
    except Exception:  # this reading does not fit the graph
        return None
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(y) for y in outputs]


def _unit_reshape(spec: InputSpec, shape: tuple, role: str) -> BoundaryFix | None:
    """A reshape that only adds or drops unit axes (scalar <-> (1,)), which cannot misplace a value."""
    target = _resolved(shape, math.prod(spec.shape)) if -1 not in spec.shape else None
    if target is None or [d for d in target if d != 1] != [d for d in spec.shape if d != 1]:
        return None
    return BoundaryFix(spec.name, role, spec.shape, _known(shape), "reshape")


def _resolved(shape: tuple, size: int) -> tuple[int, ...] | None:
    """shape with its one unknown dimension worked out from size, or None when it cannot hold size elements."""
    known = math.prod(d for d in shape if d is not None)
    unknown = sum(d is None for d in shape)
    if unknown > 1 or (unknown == 0 and known != size) or (unknown == 1 and (known == 0 or size % known)):
        return None
    return tuple(size // known if d is None else d for d in shape)


def _fits_any(shape: tuple, spec: InputSpec, may_be_channels_last: bool) -> bool:
    return _fits(tuple(spec.shape), shape) or (may_be_channels_last and _fits(channels_last(spec).shape, shape))


def _fits(onnx_shape: tuple, model_shape: tuple) -> bool:
    """Equal ranks and dims, an unknown dimension (-1 in ONNX, None in Keras) matching anything."""
    return len(onnx_shape) == len(model_shape) and all(
        a == -1 or b is None or a == b for a, b in zip(onnx_shape, model_shape)
    )


def _channels_last_perm(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1) if 3 <= rank <= 5 else tuple(range(rank))


def _perms(rank: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(rank))) if 2 <= rank <= MAX_PERMUTED_RANK else []


def _shape(tensor) -> tuple:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _known(shape: tuple) -> tuple[int, ...]:
    return tuple(-1 if d is None else d for d in shape)


def _log(log_path: Path, fixes: tuple[BoundaryFix, ...], note: str) -> None:
    with open(log_path, "a") as log:
        log.write(f"{LOG_PREFIX}onnx2tf changed a boundary shape; {note}\n")
        for f in fixes:
            log.write(
                f"{LOG_PREFIX}{f.role} {f.name!r}: {f.op}{f' {f.perm}' if f.perm else ''} between "
                f"ONNX {f.onnx_shape} and onnx2tf's {f.model_shape}\n"
            )
