"""Evidence for what onnx2tf did to shapes and layouts: ONNX Runtime's outputs on seeded inputs, run once
per conversion, and one rule for when a candidate reading agrees with them.

Three decisions rest on it: the reshapes or transposes at the file's boundary (boundary.py), the
layout of an output whose shape reads the same both ways (signature.py), and whether onnx2tf's fast
translation is kept (convert.py). Each tells a right reading from a grossly wrong one (values from
another axis); the ledger then judges the chosen file's numerics at the job's own tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import first_line
from edgepipe.models.shared.specs import InputSpec, random_feeds

# Max abs error allowed, as a fraction of max(1, the largest |reference| value). A wrong axis or
# transpose is off by the values' own magnitude; float32 rounding of a whole graph stays far below.
REL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Evidence:
    """Seeded inputs in the ONNX layout and ONNX Runtime's outputs by name; outputs is None (with the
    reason) when ONNX Runtime cannot run the model."""

    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] | None
    unavailable: str = ""


def run_onnxruntime(onnx_path: Path, specs: tuple[InputSpec, ...], log_path: Path) -> Evidence:
    """ONNX Runtime's outputs for the model on seeded inputs (its banners into log_path)."""
    import onnxruntime as ort

    feeds = random_feeds(specs, seed=0)
    try:
        with output_to_log(log_path):
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    except Exception as exc:  # ONNX Runtime refuses some valid graphs
        return Evidence(feeds, None, f"{type(exc).__name__}: {first_line(exc)[:200]}")
    return Evidence(feeds, outputs)


def agrees(got: np.ndarray, reference: np.ndarray) -> bool:
    """Same shape, and every value within REL_TOLERANCE (NaN against NaN, inf against the same inf agree)."""
    got, reference = np.asarray(got), np.asarray(reference)
    if got.shape != reference.shape:
        return False
    ref, out = reference.astype(np.float64), got.astype(np.float64)
    same = (ref == out) | (np.isnan(ref) & np.isnan(out))
    finite = np.abs(ref[np.isfinite(ref)])
    limit = REL_TOLERANCE * max(1.0, float(finite.max()) if finite.size else 0.0)
    with np.errstate(invalid="ignore"):
        return bool(np.all(same | (np.abs(out - ref) <= limit)))
