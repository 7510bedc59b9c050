"""Inputs for `edgepipe profile`: made from a model's declared inputs, or read from an .npz and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.models.shared.errors import InputFileError
from edgepipe.models.shared.specs import InputSpec, random_array
from edgepipe.profilers.runtimes import Session, quantize


def generated_inputs(session, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs of each declared shape and dtype; quantized integer inputs from real values."""
    if not session.shapes_declared:
        raise InputFileError(
            f"{session.path} records no input shapes (TorchScript); pass --inputs FILE.npz with "
            f"one array per input: {', '.join(repr(s.name) for s in session.inputs)}"
        )
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in session.inputs:
        shape = _concrete_shape(spec, session.path)
        if spec.name in session.quantization:
            # Real values spread over what the integer type can represent, then quantized
            # as the model's own QUANTIZE op would, so every code the model expects occurs.
            scale, zero_point = session.quantization[spec.name]
            info = np.iinfo(np.dtype(spec.dtype))
            low, high = scale * (info.min - zero_point), scale * (info.max - zero_point)
            feeds[spec.name] = quantize(rng.uniform(low, high, shape), scale, zero_point, np.dtype(spec.dtype))
        else:
            feeds[spec.name] = random_array(rng, shape, spec.dtype)
    return feeds


def _concrete_shape(spec: InputSpec, path: Path) -> tuple[int, ...]:
    """spec's shape with an open batch dimension taken as 1; any other open dimension is an error."""
    open_dims = [i for i, d in enumerate(spec.shape) if d < 0 and i > 0]
    if open_dims:
        raise InputFileError(
            f"{path}: input {spec.name!r} has open dimension {open_dims[0]} (shape {_shown(spec.shape)}) and no size "
            f"for it; pass --inputs FILE.npz with an array named {spec.name!r} of the size you want"
        )
    return tuple(1 if d < 0 else d for d in spec.shape)


def read_inputs(file: Path, session: Session) -> dict[str, np.ndarray]:
    """Arrays from an .npz by input name, checked against the model; real values quantized where it takes integers."""
    try:
        with np.load(file) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputFileError(
            f"inputs file {file} is not a readable .npz ({str(exc)[:160]}); "
            "write it with numpy.savez(FILE, name=array, ...)"
        ) from None
    names = [s.name for s in session.inputs]
    missing, extra = [n for n in names if n not in arrays], [n for n in arrays if n not in names]
    if missing or extra:
        problems = ([f"no array for input(s) {', '.join(map(repr, missing))}"] if missing else []) + (
            [f"array(s) {', '.join(map(repr, extra))} match no input"] if extra else []
        )
        raise InputFileError(
            f"inputs file {file}: {'; '.join(problems)}; the model takes {', '.join(map(repr, names))}, one array each"
        )
    if not session.shapes_declared:  # nothing to check against: the model's first run will judge them
        return {spec.name: arrays[spec.name] for spec in session.inputs}
    return {
        spec.name: _checked(file, spec, arrays[spec.name], session.quantization.get(spec.name))
        for spec in session.inputs
    }


def _checked(file: Path, spec: InputSpec, array: np.ndarray, quantization: tuple[float, int] | None) -> np.ndarray:
    """array as the model takes it, or an InputFileError saying what was expected and what came."""
    fits = len(array.shape) == len(spec.shape) and all(d < 0 or d == g for d, g in zip(spec.shape, array.shape))
    if not fits:
        hint = (
            f"; pass --batch {array.shape[0]} if the model can take that batch"
            if len(array.shape) == len(spec.shape) and array.shape[1:] == spec.shape[1:]
            else ""
        )
        raise InputFileError(
            f"inputs file {file}: input {spec.name!r} has shape {list(array.shape)}, "
            f"the model takes {_shown(spec.shape)}{hint}"
        )
    if array.dtype == np.dtype(spec.dtype):
        return array
    if quantization and np.issubdtype(array.dtype, np.floating):
        return quantize(array, *quantization, np.dtype(spec.dtype))
    also = " (or real values as floats, which are quantized with its scale and zero point)" if quantization else ""
    raise InputFileError(
        f"inputs file {file}: input {spec.name!r} is {array.dtype}, the model takes "
        f"{spec.dtype}{also}; save the array as {spec.dtype}"
    )


def _shown(shape: tuple[int, ...]) -> str:
    """A shape with open dimensions shown as '?'."""
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"
