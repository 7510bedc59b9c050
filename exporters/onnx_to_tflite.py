"""ONNX -> TFLite through onnx2tf's Python API, in-process, offline, output captured."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.capture import output_to_log
from exporters.onnx_inputs import onnx_input_specs
from exporters.tflite_ops import custom_ops
from models.errors import ExportError
from models.specs import InputSpec, channels_last, convert_layout

# Variant name -> the suffix onnx2tf gives the file it writes for it.
VARIANTS = {"fp32": "float32"}

# onnx2tf reads this file from its working directory, and downloads it when absent, for
# any model whose inputs are all 4-D with 3 channels (as test data for its own checks).
_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@dataclass(frozen=True)
class TfliteExport:
    """One written TFLite file and its inputs as the TFLite signature takes them."""

    path: Path
    variant: str
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    custom_ops: tuple[str, ...] = ()


def export_tflite(
    onnx_path: Path,
    out_path: Path,
    variant: str,
    log_path: Path,
    onnx_inputs: tuple[InputSpec, ...] | None = None,
    calibration: dict[str, np.ndarray] | None = None,
    allow_flex: bool = False,
) -> TfliteExport:
    """Convert one ONNX file to one TFLite variant at out_path.

    calibration maps input names to samples in the ONNX (PyTorch) layout; onnx2tf gets
    them as its custom input data so it never reaches for its downloadable sample.
    A result that needs Select-TF (Flex) or custom ops fails unless allow_flex: a phone's
    stock TFLite runtime cannot run it.
    """
    if variant not in VARIANTS:
        raise ExportError(f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}")
    specs = onnx_inputs or onnx_input_specs(onnx_path)
    with tempfile.TemporaryDirectory(prefix="onnx2tf-", dir=out_path.parent) as work:
        work_dir = Path(work)
        cind = _write_custom_inputs(work_dir, specs, calibration or {})
        _write_offline_sample(work_dir, specs, calibration or {})
        _run_onnx2tf(onnx_path, work_dir / "out", cind, log_path)
        produced = work_dir / "out" / f"{onnx_path.stem}_{VARIANTS[variant]}.tflite"
        if not produced.exists():
            raise ExportError(f"onnx2tf wrote no {variant} model for {onnx_path.name} (see {log_path})")
        needs = custom_ops(produced)
        if needs and not allow_flex:
            raise ExportError(
                f"{onnx_path.name} -> {variant}: the TFLite model needs non-builtin op(s) {', '.join(needs)}, "
                "which a stock TFLite runtime cannot run; rewrite the model to avoid them or pass --allow-flex"
            )
        with output_to_log(log_path):  # the interpreter announces its delegates on fd 2
            inputs, outputs = _signature(produced, specs)
        shutil.move(str(produced), out_path)
    return TfliteExport(out_path, variant, inputs, outputs, tuple(needs))


def _run_onnx2tf(onnx_path: Path, out_dir: Path, cind: list, log_path: Path) -> None:
    try:
        with output_to_log(log_path), contextlib.chdir(out_dir.parent):
            import onnx2tf  # heavy: loads TensorFlow, which logs to fd 2 on import

            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(out_dir),
                custom_input_op_name_np_data_path=cind or None,
                copy_onnx_input_output_names_to_tflite=True,
                output_signaturedefs=True,
                non_verbose=True,
            )
    except SystemExit as exc:  # onnx2tf reports its errors with sys.exit(1)
        raise ExportError(f"onnx2tf could not convert {onnx_path.name} (exit {exc.code}); see {log_path}") from None
    except Exception as exc:
        raise ExportError(
            f"onnx2tf failed on {onnx_path.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            f" (details in {log_path})"
        ) from exc


def _write_custom_inputs(work_dir: Path, specs: tuple[InputSpec, ...], calibration: dict) -> list:
    """onnx2tf's -cind entries: [name, .npy in channels-last layout, mean, std]."""
    entries = []
    for spec in specs:
        if spec.name not in calibration:
            continue
        data = convert_layout(calibration[spec.name], spec.layout, channels_last(spec).layout)
        path = work_dir / f"cind_{len(entries)}.npy"
        np.save(path, data.astype(spec.dtype))
        # The data is already normalised as the model expects it: identity mean and std.
        entries.append([spec.name, str(path), np.zeros(1, np.float32), np.ones(1, np.float32)])
    return entries


def _write_offline_sample(work_dir: Path, specs: tuple[InputSpec, ...], calibration: dict) -> None:
    """Place onnx2tf's sample image file locally so it never downloads it."""
    if not all(len(s.shape) == 4 and s.shape[1] == 3 for s in specs):
        return
    first = specs[0]
    if first.name in calibration:
        nhwc = convert_layout(calibration[first.name].astype(np.float32), first.layout, "NHWC")
        reps = -(-20 // len(nhwc))
        sample = np.tile(nhwc, (reps, 1, 1, 1))[:20]
        rows = np.linspace(0, sample.shape[1] - 1, 128).round().astype(int)
        cols = np.linspace(0, sample.shape[2] - 1, 128).round().astype(int)
        sample = sample[:, rows][:, :, cols]
    else:
        sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(work_dir / _SAMPLE_FILE, np.ascontiguousarray(sample, dtype=np.float32))


def _signature(tflite_path: Path, specs: tuple[InputSpec, ...]) -> tuple[tuple[InputSpec, ...], tuple[str, ...]]:
    """Read the written model's signature and record each input's layout.

    onnx2tf makes 3-D to 5-D inputs channels-last (and keeps the shape when it cannot);
    the record says which, from the shapes TFLite reports, so no consumer has to guess.
    Where both readings fit (a 1x1x1x1 input), channels-last is onnx2tf's rule.
    """
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tflite_path)).get_signature_runner()
    details = runner.get_input_details()
    inputs = []
    for spec in specs:
        if spec.name not in details:
            raise ExportError(f"{tflite_path.name}: input {spec.name!r} missing from the TFLite signature")
        shape = tuple(int(d) for d in details[spec.name]["shape"])
        layout = next((s.layout for s in (channels_last(spec), spec) if s.shape == shape), None)
        if layout is None:
            raise ExportError(
                f"{tflite_path.name}: input {spec.name!r} has shape {shape}, neither the ONNX shape {spec.shape} "
                f"nor its channels-last form {channels_last(spec).shape}"
            )
        dtype = np.dtype(details[spec.name]["dtype"]).name
        inputs.append(InputSpec(spec.name, shape, dtype, layout))
    return tuple(inputs), tuple(runner.get_output_details())
