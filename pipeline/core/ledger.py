"""The numerics ledger: per-hop, per-output error figures, failing once with every mismatch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from edgepipe.models.shared.errors import ParityError

# The tolerance of an all-zero reference output: float32's smallest normal number, so only
# values that are zero in float32 terms agree with it.
_ZERO_TOLERANCE = float(np.finfo(np.float32).tiny)

# Float rounding, not a conversion error: a float output whose max abs error exceeds its tolerance
# (rel_tolerance x its peak) still agrees when every value is within that tolerance plus ROUNDING_FACTOR
# x rel_tolerance of its own magnitude, and the output as a whole keeps the SQNR that rel_tolerance
# stands for (-20 log10 rel_tolerance: 80 dB at the default 1e-4). TFLite's and ONNX Runtime's
# transcendental kernels (pow, exp, erf) round differently by about 1e-4 of a value (ONNX's LRN test:
# 3.4e-4 on a peak of 2.8, at 87 dB); a wrong axis, op or constant costs far more, and a single wrong
# value fails its own bound. A stricter rel_tolerance tightens both.
ROUNDING_FACTOR = 10.0

# Float rounding judged against the truth: where PyTorch runs the model in float64, a float output still
# over its tolerance is float rounding when the candidate is no further from the float64 outputs than
# FLOAT64_FACTOR x PyTorch's own float32 outputs are. Deep networks with outputs in the hundreds
# (visformer_tiny: PyTorch float32 off the float64 outputs by 0.19, the ONNX file by 0.14) exceed
# 1e-4 of the peak on both sides; a wrong op or constant is off by far more than float32 itself.
FLOAT64_FACTOR = 2.0
# Below this rel_tolerance a job asks for more than float32 arithmetic promises on a whole network (its
# rounding alone reads about 110-140 dB), so rounding is refused there whatever float64 says, as the
# rounding rule above refuses it at -20 log10 rel_tolerance dB.
FLOAT64_MIN_REL_TOLERANCE = 1e-6


@dataclass(frozen=True)
class OutputFigures:
    """How one output of a candidate compares with the same output of the reference."""

    output: str
    max_abs: float
    mean_abs: float
    cosine: float
    sqnr_db: float
    scale: float
    tolerance: float | None  # max abs error allowed, when judged by it
    min_sqnr_db: float | None  # SQNR required, when judged by it
    ok: bool
    float_rounding: bool = False  # ok only as float rounding: over the tolerance, within ROUNDING_FACTOR per value
    # Against PyTorch's float64 outputs, when asked: the candidate's max abs error, and PyTorch float32's
    float64_max_abs: float | None = None
    torch_float32_max_abs: float | None = None


@dataclass(frozen=True)
class HopLedger:
    """All outputs of one hop (e.g. torch -> tflite:fp32)."""

    hop: str
    reference: str
    candidate: str
    samples: int
    outputs: tuple[OutputFigures, ...]

    @property
    def ok(self) -> bool:
        """True when every output is within tolerance."""
        return all(o.ok for o in self.outputs)

    def summary(self) -> dict:
        """The DESIGN.md ledger keys: worst figures over the outputs."""
        return {
            "reference": self.reference,
            "max_abs": max(o.max_abs for o in self.outputs),
            "mean_abs": max(o.mean_abs for o in self.outputs),
            "cosine": min(o.cosine for o in self.outputs),
            "sqnr_db": min(o.sqnr_db for o in self.outputs),
            "ok": self.ok,
            "float_rounding": any(o.float_rounding for o in self.outputs),
        }

    def to_dict(self) -> dict:
        """Full JSON form, with every output's figures."""
        return {
            **self.summary(),
            "hop": self.hop,
            "candidate": self.candidate,
            "samples": self.samples,
            "outputs": [asdict(o) for o in self.outputs],
        }


def output_figures(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    rel_tolerance: float | None,
    min_sqnr_db: float | None = None,
) -> OutputFigures:
    """Error figures of one output, judged by max abs error (rel_tolerance x the reference's max
    magnitude), SQNR, or both."""
    ref, got = np.asarray(reference), np.asarray(candidate)
    if ref.size != got.size:
        raise ParityError(f"output {name!r}: candidate has {got.size} values, reference {ref.size}")
    # Maxima propagate NaN: an output with a NaN or infinity the reference lacks fails every bound.
    peaks = np.array([_peaks(r, g) for r, g in _chunks(ref, got)]).reshape(-1, 4)
    scale, got_peak, max_abs = (float(np.max(peaks[:, i])) if ref.size else 0.0 for i in range(3))
    mean_abs = float(peaks[:, 3].sum() / ref.size) if ref.size else 0.0
    tolerance = None if rel_tolerance is None else (rel_tolerance * scale if scale > 0 else _ZERO_TOLERANCE)
    cosine, sqnr = _cosine_and_sqnr(ref, got, max(scale, got_peak) if ref.size else 0.0)
    rounding = tolerance is not None and max_abs > tolerance and _float_rounding(ref, got, rel_tolerance, scale, sqnr)
    ok = (tolerance is None or max_abs <= tolerance or rounding) and (min_sqnr_db is None or sqnr >= min_sqnr_db)
    return OutputFigures(name, max_abs, mean_abs, cosine, sqnr, scale, tolerance, min_sqnr_db, ok, rounding)


# Values compared at a time: float64 temporaries of a few MiB each. Whole, a segmentation model's 32
# validation outputs (34 M values) took 2 GiB of temporaries per hop.
_CHUNK = 1 << 20


def _chunks(reference: np.ndarray, candidate: np.ndarray):
    """(reference, candidate) as flat float64 arrays, a chunk at a time, in C order. NaN where the reference
    has NaN (sqrt of a negative) is agreement, and so is the same infinity (a cast of float16's inf): both
    read as 0. Any other NaN or infinity is not."""
    for ref, got in _slices(reference, candidate):
        ref, got = ref.astype(np.float64).reshape(-1), got.astype(np.float64).reshape(-1)
        agree = (np.isnan(ref) & np.isnan(got)) | (np.isinf(ref) & (ref == got))
        ref[agree], got[agree] = 0.0, 0.0
        yield ref, got


def _slices(reference: np.ndarray, candidate: np.ndarray):
    """Matching slices of about _CHUNK values: whole rows of the first axis when both have the same shape,
    so that an output transposed into its layout is not copied whole to be read flat."""
    if reference.shape == candidate.shape and reference.ndim > 1:
        rows = max(1, _CHUNK // max(1, reference[0].size))
        for start in range(0, len(reference), rows):
            yield reference[start : start + rows], candidate[start : start + rows]
        return
    reference, candidate = reference.reshape(-1), candidate.reshape(-1)
    for start in range(0, reference.size, _CHUNK):
        yield reference[start : start + _CHUNK], candidate[start : start + _CHUNK]


def _peaks(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float, float]:
    """Of one chunk: max finite |reference| (an infinity would make any error allowed), max |candidate|,
    max |error|, sum |error|."""
    error, finite = np.abs(got - ref), np.abs(ref[np.isfinite(ref)])
    return finite.max(initial=0.0), np.abs(got).max(), error.max(), error.sum()


def _float_rounding(ref: np.ndarray, got: np.ndarray, rel_tolerance: float, scale: float, sqnr: float) -> bool:
    """Whether an error over the tolerance is float rounding: small against each value, and the whole output
    at the SQNR rel_tolerance stands for."""
    if scale == 0 or sqnr < -20 * np.log10(rel_tolerance):
        return False

    def within(r: np.ndarray, g: np.ndarray) -> bool:
        return bool(np.all(np.abs(g - r) <= rel_tolerance * (scale + ROUNDING_FACTOR * np.abs(r))))

    return all(within(r, g) for r, g in _chunks(ref, got))


def _cosine_and_sqnr(reference: np.ndarray, candidate: np.ndarray, peak: float) -> tuple[float, float]:
    """Cosine similarity and SQNR (dB) in float64, exact at any magnitude: no epsilon, scaled to the larger peak."""
    if peak == 0:
        return 1.0, float("inf")  # both all zero: identical
    signal = power = cross = noise = 0.0
    for ref, got in _chunks(reference, candidate):
        # Scaling first keeps the squared sums of 1e-200 or 1e200 outputs from under- or overflowing.
        ref, got = ref / peak, got / peak
        signal, power, cross = signal + float(ref @ ref), power + float(got @ got), cross + float(ref @ got)
        noise += float((got - ref) @ (got - ref))
    # sqrt(x * x) == x in IEEE arithmetic, so identical outputs give exactly 1.0.
    cosine = float(np.clip(cross / np.sqrt(signal * power), -1.0, 1.0)) if signal > 0 and power > 0 else 0.0
    if noise == 0:
        return cosine, float("inf")
    return cosine, float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def compare(
    hop: str,
    reference_name: str,
    candidate_name: str,
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    rel_tolerance: float | None,
    min_sqnr_db: float | None = None,
) -> HopLedger:
    """Compare every output the reference has; a missing candidate output is a mismatch."""
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise ParityError(f"{hop}: candidate lacks output(s) {', '.join(missing)}")
    figures = tuple(output_figures(n, reference[n], candidate[n], rel_tolerance, min_sqnr_db) for n in reference)
    samples = sample_count(reference)
    return HopLedger(hop, reference_name, candidate_name, samples, figures)


def over_tolerance(o: OutputFigures) -> bool:
    """A float output (judged by max abs error, not SQNR) that its tolerance and the rounding rule refused."""
    return not o.ok and o.tolerance is not None and o.min_sqnr_db is None


def judged_by_float64(rel_tolerance: float | None) -> bool:
    """Whether float outputs judged at rel_tolerance may be judged once more against float64."""
    return rel_tolerance is not None and rel_tolerance >= FLOAT64_MIN_REL_TOLERANCE


def rejudged_by_float64(
    ledger: HopLedger, candidate: dict[str, np.ndarray], truth: dict[str, np.ndarray], float32: dict[str, np.ndarray]
) -> HopLedger:
    """The hop with each float output over its tolerance judged once more against PyTorch's float64 outputs
    (truth): float rounding when the candidate is within FLOAT64_FACTOR x PyTorch float32's own max abs
    error of them. Both errors are recorded either way. Only for hops judged_by_float64 allows."""
    figures = []
    for o in ledger.outputs:
        if not over_tolerance(o) or o.output not in truth:
            figures.append(o)
            continue
        own = _max_abs_error(truth[o.output], float32[o.output])
        error = _max_abs_error(truth[o.output], candidate[o.output])
        rounding = own > 0 and error <= FLOAT64_FACTOR * own  # False for NaN
        figures.append(
            replace(o, ok=rounding, float_rounding=rounding, float64_max_abs=error, torch_float32_max_abs=own)
        )
    return replace(ledger, outputs=tuple(figures))


def _max_abs_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """max |candidate - reference|, NaN when the candidate has a NaN or infinity the reference lacks."""
    if np.asarray(reference).size != np.asarray(candidate).size:
        return float("nan")
    return float(
        np.max([np.abs(got - ref).max(initial=0.0) for ref, got in _chunks(reference, candidate)], initial=0.0)
    )


def require_parity(ledgers: list[HopLedger]) -> None:
    """Raise one ParityError naming every output of every hop that is out of tolerance."""
    failures = [
        f"{ledger.hop} output {o.output!r}: {_shortfall(o)}" for ledger in ledgers for o in ledger.outputs if not o.ok
    ]
    if failures:
        raise ParityError("numerics out of tolerance: " + "; ".join(failures) + "; see ledger.json")


def _shortfall(o: OutputFigures) -> str:
    """'max_abs 0.2 > tolerance 0.1 (cosine ..., SQNR ... dB)' or 'SQNR 12.0 dB < 20.0 dB (...)'."""
    if o.tolerance is not None and not o.max_abs <= o.tolerance:  # NaN included
        said = f"max_abs {o.max_abs:.3g} > tolerance {o.tolerance:.3g} (cosine {o.cosine:.6f}, SQNR {o.sqnr_db:.1f} dB)"
        if o.float64_max_abs is None:
            return said
        return (
            f"{said}; against PyTorch in float64 it is off by {o.float64_max_abs:.3g}, "
            f"PyTorch float32 by {o.torch_float32_max_abs:.3g} (float rounding allows {FLOAT64_FACTOR:g}x that)"
        )
    return f"SQNR {o.sqnr_db:.1f} dB < {o.min_sqnr_db:g} dB (max_abs {o.max_abs:.3g}, cosine {o.cosine:.6f})"


def sample_count(arrays: dict) -> int:
    """How many samples the first array holds along its first axis (1 for a scalar, 0 for none)."""
    first = next(iter(arrays.values()), None)
    return 0 if first is None else (int(np.shape(first)[0]) if np.ndim(first) else 1)
