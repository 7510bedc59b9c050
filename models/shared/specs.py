"""Small shared types: how a model's inputs look in each layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape, dtype and memory layout (NCHW, NHWC, NC, ...)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NC"

    def to_dict(self) -> dict:
        """JSON form with the shape as a list."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        """Inverse of to_dict."""
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"), d.get("layout", "NC"))


# Channels-first layouts and the permutation that makes them channels-last.
_TO_CHANNELS_LAST = {"NCW": (0, 2, 1), "NCHW": (0, 2, 3, 1), "NCDHW": (0, 2, 3, 4, 1)}
_CHANNELS_LAST_NAME = {"NCW": "NWC", "NCHW": "NHWC", "NCDHW": "NDHWC"}
# Each channels-last layout name and the channels-first layout it came from.
FROM_CHANNELS_LAST = {last: first for first, last in _CHANNELS_LAST_NAME.items()}


def channels_last(spec: InputSpec) -> InputSpec:
    """The spec a channels-last runtime (TFLite from onnx2tf) expects for this input."""
    perm = _TO_CHANNELS_LAST.get(spec.layout)
    if perm is None:
        return spec
    shape = tuple(spec.shape[i] for i in perm)
    return InputSpec(spec.name, shape, spec.dtype, _CHANNELS_LAST_NAME[spec.layout])


def convert_layout(array: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Permute an array from layout src to layout dst (both spelled like NCHW)."""
    if src == dst:
        return array
    if sorted(src) != sorted(dst):
        raise ValueError(f"cannot convert layout {src} to {dst}")
    return np.ascontiguousarray(np.transpose(array, [src.index(axis) for axis in dst]))


# Random integer inputs are 0 or 1 unless their domain is known: an integer input often indexes a table
# (Gather, an embedding), and no table that has entries is smaller than that.
RANDOM_INT_HIGH = 2


def random_array(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: str, domain: tuple[float, float] | None = None
) -> np.ndarray:
    """Seeded values of one shape and dtype: standard-normal floats or integers below RANDOM_INT_HIGH, or
    uniform within domain = (low, high), exactly low when the two are equal."""
    integral = np.issubdtype(np.dtype(dtype), np.integer) or np.dtype(dtype) == np.bool_
    if domain is not None and domain[1] <= domain[0]:
        return np.full(shape, domain[0]).astype(dtype)
    if integral:
        low, high = (int(domain[0]), int(domain[1])) if domain else (0, RANDOM_INT_HIGH)
        return rng.integers(low, high, size=shape).astype(dtype)
    if domain is not None:
        return rng.uniform(domain[0], domain[1], shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def random_feeds(
    specs: tuple[InputSpec, ...], seed: int, batches: int = 1, domains: dict | None = None
) -> dict[str, np.ndarray]:
    """One seeded random array per input, `batches` of its batches stacked (a scalar stays a scalar), within
    each input's domain where domains (name -> an object with low and high) gives one."""
    rng = np.random.default_rng(seed)
    bounds = {name: (d.low, d.high) for name, d in (domains or {}).items()}
    return {
        s.name: random_array(rng, (batches * s.shape[0], *s.shape[1:]) if s.shape else (), s.dtype, bounds.get(s.name))
        for s in specs
    }
