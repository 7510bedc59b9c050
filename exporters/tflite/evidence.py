"""Evidence for what onnx2tf did to shapes and layouts: ONNX Runtime's outputs (onnx.reference's for a file
ONNX Runtime cannot load) on seeded inputs, run once per conversion, and one rule for when a candidate
reading agrees with them.

Three decisions rest on it: the reshapes or transposes at the file's boundary (boundary.py), the
layout of an output whose shape reads the same both ways (signature.py), and whether onnx2tf's fast
translation is kept (convert.py). Each tells a right reading from a grossly wrong one (values from
another axis); the ledger then judges the chosen file's numerics at the job's own tolerances.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.exporters.onnx.domains import input_domains
from edgepipe.exporters.onnx.files import onnxruntime_copy
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import InputFileError, first_line
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
    runner: str = "onnxruntime"  # or "onnx.reference", for a file ONNX Runtime cannot load


def reference_outputs(onnx_path: Path, specs: tuple[InputSpec, ...], log_path: Path) -> Evidence:
    """ONNX Runtime's outputs for the model on seeded inputs (its banners into log_path); onnx.reference's
    when ONNX Runtime cannot load the file (a newer IR or opset than it supports, an op it lacks)."""
    import onnxruntime as ort

    try:
        feeds = random_feeds(specs, seed=0, domains=input_domains(onnx_path))
    except InputFileError as exc:  # an input sets a shape: no seeded value can stand for it
        return Evidence(random_feeds(specs, seed=0), None, str(exc))
    try:
        with output_to_log(log_path):
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime refuses some valid graphs
        evidence = _by_reference(onnx_path, feeds, f"ONNX Runtime cannot load it: {first_line(exc)[:200]}")
        with open(log_path, "a") as log:
            ran = f"{evidence.runner} ran it instead" if evidence.outputs is not None else evidence.unavailable
            log.write(f"edgepipe: evidence: ONNX Runtime cannot load {onnx_path.name}; {ran}\n")
        return evidence
    try:
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    except Exception as exc:  # loaded, but these inputs are outside what the graph takes
        return Evidence(feeds, None, f"ONNX Runtime cannot run it: {type(exc).__name__}: {first_line(exc)[:200]}")
    return Evidence(feeds, outputs)


def _by_reference(onnx_path: Path, feeds: dict[str, np.ndarray], why: str) -> Evidence:
    """ONNX Runtime's outputs on an exactly lowered copy, else onnx.reference's, else no evidence."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    with tempfile.TemporaryDirectory(prefix="edgepipe-lowered-") as work:
        copy = Path(work) / onnx_path.name
        if onnxruntime_copy(onnx_path, copy) is not None:
            try:
                session = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
                outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
                return Evidence(feeds, outputs, runner="onnxruntime, on a copy lowered to what it loads")
            except Exception as exc:  # loaded, but these inputs are outside what the graph takes
                return Evidence(feeds, None, f"{why}; its lowered copy cannot run: {first_line(exc)[:200]}")

    try:
        model = onnx.load(str(onnx_path))
        outputs = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    except Exception as exc:  # the evaluator lacks some ops too
        return Evidence(feeds, None, f"{why}; onnx.reference cannot run it: {first_line(exc)[:200]}")
    return Evidence(feeds, {k: np.asarray(v) for k, v in outputs.items()}, runner="onnx.reference")


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
