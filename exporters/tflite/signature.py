"""Reading a written TFLite model's signature: each input's and output's shape, dtype and layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgepipe.exporters.tflite.evidence import Evidence, agrees
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.specs import FROM_CHANNELS_LAST, InputSpec, channels_last, convert_layout

log = logging.getLogger(__name__)


def signature(
    tflite_path: Path, specs: tuple[InputSpec, ...], onnx_outputs: tuple[InputSpec, ...], kept: set[str]
) -> tuple[tuple[InputSpec, ...], tuple[InputSpec, ...]]:
    """Read the written model's signature and record each input's and output's layout.

    onnx2tf makes 3-D to 5-D tensors channels-last unless told to keep an input's shape;
    the record says which, from the shapes TFLite reports, so no consumer has to guess.
    """
    in_details, out_details = signature_details(tflite_path)
    inputs = _record_layouts(tflite_path, "input", specs, in_details, kept)
    outputs = _record_layouts(tflite_path, "output", onnx_outputs, out_details, set())
    return inputs, outputs


def signature_details(tflite_path: Path) -> tuple[dict, dict]:
    """The SignatureDef's input and output details by name (dtype, shape, quantization)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    if not interpreter.get_signature_list():
        raise ExportError(f"{tflite_path.name}: onnx2tf wrote no SignatureDef, so inputs cannot be fed by name")
    runner = interpreter.get_signature_runner()
    return runner.get_input_details(), runner.get_output_details()


def _record_layouts(
    tflite_path: Path, kind: str, specs: tuple[InputSpec, ...], details: dict, kept: set[str]
) -> tuple[InputSpec, ...]:
    """Each tensor as TFLite has it, with the layout its shape shows relative to the ONNX spec."""
    recorded = []
    for spec in specs:
        if spec.name not in details:
            raise ExportError(f"{tflite_path.name}: {kind} {spec.name!r} missing from the TFLite signature")
        shape = tuple(int(d) for d in details[spec.name]["shape"])
        candidates = (spec,) if spec.name in kept else (channels_last(spec), spec)
        layout = next((c.layout for c in candidates if _same_shape(c.shape, shape)), None)
        if layout is None:
            raise ExportError(
                f"{tflite_path.name}: {kind} {spec.name!r} has shape {shape}, neither the ONNX shape {spec.shape} "
                f"nor its channels-last form {channels_last(spec).shape}, and no reshape or transpose of it was "
                "shown to reproduce ONNX Runtime's numbers (see the conversion log); change the ops that compute it"
            )
        recorded.append(InputSpec(spec.name, shape, np.dtype(details[spec.name]["dtype"]).name, layout))
    return tuple(recorded)


def settle_ambiguous_outputs(
    tflite_path: Path,
    onnx_inputs: tuple[InputSpec, ...],
    tflite_inputs: tuple[InputSpec, ...],
    outputs: tuple[InputSpec, ...],
    evidence: Evidence,
) -> tuple[InputSpec, ...]:
    """Decide by evidence the layout of outputs whose shape reads the same both ways.

    No onnx2tf option pins output layouts, so the file runs on the seeded inputs ONNX Runtime ran,
    and each such output takes the reading under which the two agree (channels-last, onnx2tf's
    rule, when only that one does, or neither).
    """
    ambiguous = [o for o in outputs if o.layout in FROM_CHANNELS_LAST and _reads_both_ways(o)]
    if not ambiguous:
        return outputs
    if evidence.outputs is None:  # no evidence: keep onnx2tf's channels-last rule, and say so
        log.warning(
            "%s: ONNX Runtime cannot run the model (%s), so output(s) %s, whose shape reads the same "
            "channels-first and channels-last, are recorded channels-last (onnx2tf's rule) without a check",
            tflite_path.name,
            evidence.unavailable,
            ", ".join(o.name for o in ambiguous),
        )
        return outputs
    got = run_signature(tflite_path, onnx_inputs, tflite_inputs, evidence.feeds)
    settled = []
    for out in outputs:
        first = FROM_CHANNELS_LAST.get(out.layout)
        if out in ambiguous:
            value, reference = np.asarray(got[out.name]), evidence.outputs[out.name]
            # read channels-last, the value moved to the ONNX layout must match; held as ONNX has it, as it is
            if not agrees(convert_layout(value, out.layout, first), reference) and agrees(value, reference):
                out = InputSpec(out.name, out.shape, out.dtype, first)
        settled.append(out)
    return tuple(settled)


def run_signature(
    tflite_path: Path,
    onnx_inputs: tuple[InputSpec, ...],
    tflite_inputs: tuple[InputSpec, ...],
    feeds: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The file's outputs by name for feeds in the ONNX layout, each input moved to the layout the file takes."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tflite_path)).get_signature_runner()
    return runner(
        **{t.name: convert_layout(feeds[t.name], s.layout, t.layout) for s, t in zip(onnx_inputs, tflite_inputs)}
    )


def _reads_both_ways(spec: InputSpec) -> bool:
    """True when a channels-last shape equals its channels-first form (1x8x8 as NWC and NCW)."""
    first = FROM_CHANNELS_LAST[spec.layout]
    return tuple(spec.shape[spec.layout.index(axis)] for axis in first) == spec.shape


def _same_shape(onnx_shape: tuple[int, ...], tflite_shape: tuple[int, ...]) -> bool:
    """Equal shapes, where an ONNX dimension of -1 (unknown) matches anything."""
    return len(onnx_shape) == len(tflite_shape) and all(a in (-1, b) for a, b in zip(onnx_shape, tflite_shape))
