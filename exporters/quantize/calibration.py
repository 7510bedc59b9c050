"""Calibration samples checked against a model's inputs and cut into the batches a calibrator feeds,
in one place for TFLite's converter (every calibrated variant, int8_mixed included) and ONNX Runtime's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepipe.models.shared.errors import ExportError


@dataclass(frozen=True)
class CalibratedInput:
    """One model input as a calibrator feeds it: its shape (None or -1 where open) and dtype."""

    shape: tuple[int | None, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class Requirements:
    """What the samples must be, and what to say when they are not."""

    where: str  # "model.onnx -> int8", named in every error
    layout: str  # the layout the samples must be in: "ONNX" or "the TFLite model's (NHWC for images)"
    instead: str  # what the user may choose instead, e.g. "choose variant 'dynamic' (needs none)"
    open_batch: int = 1  # samples per run where the model's batch dimension is open


def calibration_batches(
    samples: dict[str, np.ndarray] | None, inputs: dict[str, CalibratedInput], needs: Requirements
) -> tuple[dict[str, np.ndarray], ...]:
    """The samples cut along their first axis: whole batches of a fixed batch size, or runs of open_batch."""
    given = samples or {}
    unknown = sorted(set(given) - set(inputs))
    if unknown:
        raise ExportError(
            f"{needs.where}: calibration has {unknown[0]!r}, which is not a model input "
            f"(inputs: {', '.join(inputs)}); key the samples by input name"
        )
    arrays = {}
    for name, spec in inputs.items():
        problem = _problem(name, spec, given, needs)
        if problem:
            raise ExportError(f"{needs.where}: input {name!r} {problem}")
        arrays[name] = np.asarray(given[name])
    counts = sorted({len(a) for a in arrays.values()})
    first = next(iter(inputs.values())).shape
    fixed = first[0] if first and first[0] and first[0] > 0 else None
    if len(counts) > 1 or (fixed and counts[0] < fixed):
        raise ExportError(
            f"{needs.where}: calibration inputs hold {counts} samples; give every input the same number "
            f"of samples, at least the model's batch size {fixed or 1}"
        )
    step = fixed or needs.open_batch
    stop = counts[0] - counts[0] % step
    return tuple(
        {name: np.ascontiguousarray(a[i : i + step], dtype=inputs[name].dtype) for name, a in arrays.items()}
        for i in range(0, stop if fixed else counts[0], step)
    )


def _problem(name: str, spec: CalibratedInput, given: dict[str, np.ndarray], needs: Requirements) -> str | None:
    """What is wrong with one input's samples, or None."""
    array = np.asarray(given.get(name, ()))
    if not np.issubdtype(spec.dtype, np.floating):
        return f"is {np.dtype(spec.dtype).name}; int8 calibration takes float inputs only; {needs.instead}"
    if array.size == 0:
        return (
            f"has {'empty' if name in given else 'no'} calibration samples; give samples (--calibration DATA.npz, "
            f"or [export] calibration), or {needs.instead}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        return f"has {array.dtype} calibration samples; pass float samples as the model takes them"
    shape = spec.shape
    if array.ndim != len(shape) or any(d and d > 0 and d != s for d, s in zip(shape[1:], array.shape[1:])):
        return (
            f"has calibration samples of shape {array.shape}, the model takes "
            f"{tuple(d if d and d > 0 else '?' for d in shape)}; stack samples on axis 0 in the {needs.layout} layout"
        )
    return None
