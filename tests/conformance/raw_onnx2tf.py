"""Raw onnx2tf as a user runs it, for comparison: `onnx2tf.convert` with its default options, offline.

Its float32 file is then run as a user would run it, with no record of layouts: inputs matched to
the ONNX inputs by signature name (by order where the names differ) and fed in the ONNX shape, or
transposed channels-first -> channels-last where that is the shape the file takes; outputs read as
the file gives them. The outputs then go through the same check as edgepipe's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from tests.conformance import backend_models as bm

# onnx2tf reads this file from its working directory, and downloads it when absent (for models
# whose inputs are all 4-D with 3 channels): a seeded random one keeps the run offline.
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
INPUT_GROUP = "input shape fits neither layout"


class FeedError(Exception):
    """The reference inputs cannot be given to the file, or its outputs read, as the rule allows."""

    def __init__(self, message: str, group: str = INPUT_GROUP):
        super().__init__(message)
        self.group = group


def run_raw_model(model: bm.BackendModel, work_dir: Path) -> bm.ModelResult:
    """Convert one model with raw onnx2tf in work_dir and check its float32 file against the reference."""
    start = time.perf_counter()
    try:
        passed, reason, group, check = _run(model, work_dir)
    except Exception as exc:  # one broken model must not stop the suite
        passed, reason, group, check = False, bm.one_line(exc, work_dir, model.path), type(exc).__name__, None
    return bm.ModelResult(
        model.name,
        model.suite,
        passed,
        reason,
        check.max_abs_error if check else None,
        time.perf_counter() - start,
        group,
        check.verdict if check else "not run",
    )


def _run(model: bm.BackendModel, work_dir: Path) -> tuple[bool, str, str, bm.Check | None]:
    from edgepipe.exporters.tflite.inspect import custom_ops

    reference = bm.reference_or_failure(model)
    if not isinstance(reference, bm.Reference):
        return reference
    try:
        tflite = convert(model.onnx_path, work_dir)
    except SystemExit as exc:  # onnx2tf reports its errors with sys.exit(1)
        return False, f"onnx2tf exited with {exc.code}", "onnx2tf error", None
    except Exception as exc:
        return False, bm.one_line(exc, work_dir, model.path), "onnx2tf error", None
    if not tflite.is_file():
        return False, "onnx2tf wrote no float32 .tflite", "onnx2tf error", None
    needs = custom_ops(tflite)
    if needs:
        group = "Flex op " + ", ".join(sorted(needs)) if all(op.startswith("Flex") for op in needs) else "custom op"
        return False, f"needs non-builtin op(s) {', '.join(sorted(needs))}", group, None
    try:
        outputs = run_file(tflite, reference.inputs, list(reference.outputs))
    except FeedError as exc:
        return False, str(exc), exc.group, None
    except Exception as exc:
        return False, f"could not run the TFLite: {bm.one_line(exc, work_dir)}", "TFLite runtime error", None
    check = bm.compare_outputs(reference.outputs, outputs)
    return (*bm.check_verdict(check), check)


def convert(onnx_path: Path, work_dir: Path) -> Path:
    """onnx2tf.convert on a copy of the model (onnxsim rewrites it in place); the float32 file it writes."""
    from edgepipe.models.shared.capture import output_to_log

    work_dir.mkdir(parents=True, exist_ok=True)
    private = work_dir / "model.onnx"
    shutil.copyfile(onnx_path, private)
    sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(work_dir / SAMPLE_FILE, sample)
    try:
        with output_to_log(work_dir / "convert.log"), contextlib.chdir(work_dir), _venv_on_path():
            import onnx2tf

            onnx2tf.convert(
                input_onnx_file_path=str(private), output_folder_path=str(work_dir / "saved_model"), non_verbose=True
            )
    finally:
        (work_dir / SAMPLE_FILE).unlink()  # 4 MB per model
    return work_dir / "saved_model" / "model_float32.tflite"


@contextlib.contextmanager
def _venv_on_path():
    """onnx2tf runs the onnxsim command three times; in an activated venv it finds it on PATH."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved])
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def run_file(tflite: Path, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
    """One invocation on the reference inputs; outputs by ONNX output name, as the file gives them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    in_details, out_details = _matched(interpreter, list(inputs), output_names)
    feeds = {name: _feed(name, inputs[name], d) for name, d in in_details.items()}
    for name, d in in_details.items():
        if tuple(d["shape"]) != feeds[name].shape:  # a dynamic dimension (-1 in shape_signature)
            interpreter.resize_tensor_input(d["index"], feeds[name].shape)
    interpreter.allocate_tensors()
    for name, d in in_details.items():
        interpreter.set_tensor(d["index"], feeds[name])
    interpreter.invoke()
    return {name: interpreter.get_tensor(d["index"]) for name, d in out_details.items()}


def _matched(interpreter, input_names: list[str], output_names: list[str]) -> tuple[dict, dict]:
    """Tensor details keyed by ONNX name: by signature name when every name is there, else by position."""
    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner() if signatures else None
    sig_in = runner.get_input_details() if runner else {}
    sig_out = runner.get_output_details() if runner else {}

    def match(names: list[str], by_name: dict, in_order: list[dict], kind: str) -> dict:
        if set(names) <= set(by_name):
            return {n: by_name[n] for n in names}
        if len(in_order) != len(names):
            raise FeedError(
                f"the file has {len(in_order)} {kind}(s), the ONNX model {len(names)}",
                f"{kind} count differs from the ONNX model's",
            )
        return dict(zip(names, in_order))

    return (
        match(input_names, sig_in, interpreter.get_input_details(), "input"),
        match(output_names, sig_out, interpreter.get_output_details(), "output"),
    )


def _feed(name: str, value: np.ndarray, detail: dict) -> np.ndarray:
    """The ONNX input as the file takes it: as is, or channels-last when that is the file's shape."""
    shape = tuple(int(d) for d in detail["shape"])
    dynamic = tuple(int(d) for d in detail.get("shape_signature", shape))
    moved = np.moveaxis(value, 1, -1) if 3 <= value.ndim <= 5 else None
    for candidate in (value, moved):
        if candidate is not None and _fits(candidate.shape, shape, dynamic):
            return np.ascontiguousarray(candidate).astype(detail["dtype"])
    raise FeedError(
        f"input {name!r} has shape {shape} in the file, the ONNX model {value.shape}, neither as is nor channels-last"
    )


def _fits(value_shape: tuple[int, ...], shape: tuple[int, ...], dynamic: tuple[int, ...]) -> bool:
    return len(value_shape) == len(shape) and all(v == s or d == -1 for v, s, d in zip(value_shape, shape, dynamic))
