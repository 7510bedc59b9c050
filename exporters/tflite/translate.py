"""onnx2tf's graph translation, offline, with its output captured: fast mode first, strict mode when the
fast one fails or its float32 file does not reproduce ONNX Runtime (the cause logged either way)."""

from __future__ import annotations

import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.exporters.onnx.files import onnx_output_specs
from edgepipe.exporters.tflite.boundary import BoundaryFix, fit_boundary
from edgepipe.exporters.tflite.evidence import Evidence, agrees
from edgepipe.exporters.tflite.signature import run_signature, settle_ambiguous_outputs, signature
from edgepipe.exporters.tflite.write import variant_bytes, write_saved_model
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ExportError, first_line
from edgepipe.models.shared.memory import release_freed_heap
from edgepipe.models.shared.progress import step
from edgepipe.models.shared.specs import FROM_CHANNELS_LAST, InputSpec, convert_layout

# onnx2tf reads this file from its working directory, and downloads it when absent, for
# any model whose inputs are all 4-D with 3 channels (as test data for its own checks).
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
LOG_PREFIX = "edgepipe: onnx2tf: "


@dataclass(frozen=True)
class Translation:
    """onnx2tf's model saved with its boundary fitted, its float32 file, and that file's (inputs,
    outputs) layouts, which hold for every variant of the same graph. The Keras model itself is not
    kept: every file is written from the SavedModel."""

    boundary: tuple[BoundaryFix, ...]
    saved_model: Path
    float_file: Path
    inputs: tuple[InputSpec, ...]
    outputs: tuple[InputSpec, ...]
    mode: str  # "fast" or "strict"


@dataclass(frozen=True)
class Source:
    """What onnx2tf translates: the prepared private copy, the user's file it came from (names, ONNX
    Runtime's evidence), the inputs, those whose shape onnx2tf must keep, and calibration samples in
    the layout the TF model takes."""

    private: Path
    original: Path
    specs: tuple[InputSpec, ...]
    kept: frozenset[str]
    samples: dict[str, np.ndarray]


def translate(source: Source, evidence: Evidence, out_dir: Path, log_path: Path) -> Translation:
    """The fast translation when its float32 file reproduces ONNX Runtime on the evidence, else the strict one.

    onnx2tf's strict mode picks layouts by running the graph translated so far at every binary op:
    half of convnext_tiny's conversion.
    """
    cind = _write_custom_inputs(source.private.parent, source.specs, source.samples)
    _write_offline_sample(source.private.parent, source.specs, source.samples)
    try:
        fast = _translation(source, cind, evidence, out_dir, log_path, strict=False)
        reason = _not_reproduced(fast, source.specs, evidence, log_path)
        if reason is None:
            return fast
    except Exception as exc:  # whatever it was, the strict translation is tried, and the cause logged
        reason = (
            f"failed: {exc}" if isinstance(exc, ExportError) else f"failed: {type(exc).__name__}: {first_line(exc)}"
        )
    with open(log_path, "a") as log:
        log.write(f"{LOG_PREFIX}the fast translation {reason}; translating in strict mode\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    return _translation(source, cind, evidence, out_dir, log_path, strict=True)


def _translation(source: Source, cind: list, evidence: Evidence, out_dir: Path, log_path: Path, strict: bool):
    outputs = onnx_output_specs(source.original)
    boundary = _saved_model(source, cind, evidence, outputs, out_dir, log_path, strict)
    release_freed_heap()  # the Keras model's, before TFLite's converter makes its own copies of the weights
    float_file = out_dir / "model_fp32.tflite"
    step(f"export: writing {float_file.name}")
    with output_to_log(log_path):
        float_file.write_bytes(variant_bytes(out_dir, "fp32", (), source.original.name, log_path))
        inputs, outputs = signature(float_file, source.specs, outputs, set(source.kept))
        outputs = settle_ambiguous_outputs(float_file, source.specs, inputs, outputs, evidence)
    return Translation(boundary, out_dir, float_file, inputs, outputs, "strict" if strict else "fast")


def _saved_model(
    source: Source, cind: list, evidence: Evidence, outputs: tuple, out_dir: Path, log_path: Path, strict: bool
) -> tuple[BoundaryFix, ...]:
    """onnx2tf's Keras model, its boundary fitted, saved to out_dir; the fixes. The model is dropped on return."""
    keras = _run_onnx2tf(source.private, source.original, cind, sorted(source.kept), log_path, strict)
    model = fit_boundary(keras, source.specs, outputs, set(source.kept), evidence, log_path)
    step("export: writing the SavedModel")
    with output_to_log(log_path):
        write_saved_model(model, [o.name for o in outputs], out_dir)
    return model.fixes


def _not_reproduced(
    translation: Translation, specs: tuple[InputSpec, ...], evidence: Evidence, log_path: Path
) -> str | None:
    """Why the float32 file cannot be trusted to reproduce ONNX Runtime, or None when it does."""
    if evidence.outputs is None:
        return f"cannot be checked: ONNX Runtime cannot run the model ({evidence.unavailable})"
    try:
        with output_to_log(log_path):  # the interpreter announces its delegates on fd 2
            got = run_signature(translation.float_file, specs, translation.inputs, evidence.feeds)
    except Exception as exc:
        return f"wrote a float32 file that cannot run: {type(exc).__name__}: {first_line(exc)[:200]}"
    for out in translation.outputs:
        mine = convert_layout(np.asarray(got[out.name]), out.layout, FROM_CHANNELS_LAST.get(out.layout, out.layout))
        reference = evidence.outputs[out.name]
        if not agrees(mine, reference):
            error = np.abs(mine.astype(np.float64) - reference) if mine.shape == reference.shape else None
            shown = f"max abs error {np.nanmax(error):.3g}" if error is not None else f"shape {mine.shape}"
            return f"does not reproduce ONNX Runtime: output {out.name!r} has {shown} against {reference.shape}"
    return None


def _run_onnx2tf(private: Path, original: Path, cind: list, keep_shape: list[str], log_path: Path, strict: bool):
    """onnx2tf's graph translation only: the Keras model, before onnx2tf writes any file."""
    try:
        with output_to_log(log_path), contextlib.chdir(private.parent):
            import onnx2tf  # heavy: loads TensorFlow, which logs to fd 2 on import

            from edgepipe.exporters.tflite.onnx2tf_inference import incremental_test_inference
            from edgepipe.exporters.tflite.onnx2tf_patch import translator_fixes

            with translator_fixes(), incremental_test_inference():
                return onnx2tf.convert(
                    input_onnx_file_path=str(private),
                    output_folder_path=str(private.parent / "onnx2tf"),
                    custom_input_op_name_np_data_path=cind or None,
                    keep_shape_absolutely_input_names=keep_shape or None,
                    # edgepipe writes the files (tflite/write.py): onnx2tf's own writing spends minutes
                    # serialising Keras metadata, and without it grouped convolutions stay one op.
                    disable_model_save=True,
                    # the ONNX step ran onnxsim in-process; onnx2tf's own run depends on finding the
                    # onnxsim executable on PATH, which made results vary by shell.
                    not_use_onnxsim=True,
                    disable_strict_mode=not strict,
                    non_verbose=True,
                )
    except SystemExit as exc:  # onnx2tf reports its errors with sys.exit(1)
        raise ExportError(
            f"onnx2tf could not convert {original.name} (exit {exc.code}){_failed_node(private, log_path)}"
            f"; see {log_path}"
        ) from None
    except Exception as exc:
        op = exc.name.removeprefix("onnx2tf.ops.") if isinstance(exc, ModuleNotFoundError) and exc.name else None
        if op and exc.name.startswith("onnx2tf.ops."):
            nodes = [n.name or "(unnamed)" for n in _onnx_nodes(private) if n.op_type == op]
            raise ExportError(
                f"{original.name}: ONNX op {op} has no TFLite conversion in onnx2tf "
                f"(node(s) {', '.join(nodes) or '?'}); replace it in the model"
            ) from None
        raise ExportError(
            f"onnx2tf failed on {original.name}{_failed_node(private, log_path)}: "
            f"{type(exc).__name__}: {first_line(exc)[:300]} (details in {log_path})"
        ) from exc


def _onnx_nodes(onnx_path: Path) -> list:
    """The graph's nodes."""
    import onnx

    return list(onnx.load(str(onnx_path)).graph.node)


def _failed_node(onnx_path: Path, log_path: Path) -> str:
    """' at node NAME (OpType)' from the last node onnx2tf names in its error log, or ''."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace")) if log_path.exists() else ""
    names = re.findall(r"onnx_op_name: (\S+)", text)
    if not names:
        return ""
    types = {n.name: n.op_type for n in _onnx_nodes(onnx_path)}
    return f" at node {names[-1]} ({types.get(names[-1], '?')})"


def _write_custom_inputs(work_dir: Path, specs: tuple[InputSpec, ...], samples: dict[str, np.ndarray]) -> list:
    """onnx2tf's -cind entries: [name, .npy of the samples in the TF model's layout, mean, std]."""
    entries = []
    for spec in specs:
        if spec.name not in samples:
            continue
        path = work_dir / f"cind_{len(entries)}.npy"
        np.save(path, samples[spec.name])
        # The data is already normalised as the model expects it: identity mean and std.
        entries.append([spec.name, str(path), np.zeros(1, np.float32), np.ones(1, np.float32)])
    return entries


def _write_offline_sample(work_dir: Path, specs: tuple[InputSpec, ...], samples: dict[str, np.ndarray]) -> None:
    """Place onnx2tf's sample image file locally so it never downloads it (samples are in the TF layout)."""
    if not all(len(s.shape) == 4 and s.shape[1] == 3 for s in specs):
        return
    first = specs[0]
    if first.name in samples and samples[first.name].shape[-1] == 3:
        nhwc = samples[first.name].astype(np.float32)
        sample = np.tile(nhwc, (-(-20 // len(nhwc)), 1, 1, 1))[:20]
        rows = np.linspace(0, sample.shape[1] - 1, 128).round().astype(int)
        cols = np.linspace(0, sample.shape[2] - 1, 128).round().astype(int)
        sample = sample[:, rows][:, :, cols]
    else:
        sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(work_dir / SAMPLE_FILE, np.ascontiguousarray(sample, dtype=np.float32))
