"""edgepipe's ONNX -> TFLite export over the onnx package's backend test models, beside raw onnx2tf.

Each model takes the in-process path of `edgepipe export FILE.onnx --inputs X.npz`; then the TFLite
outputs are compared with the reference outputs stored next to the model (computed by PyTorch for
the PyTorch suites, by ONNX's reference implementation for the node suite). `--mode raw_onnx2tf` runs plain
onnx2tf instead (tests/conformance/raw_onnx2tf.py) through the same comparison.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from edgepipe.exporters.tflite.boundary import LOG_PREFIX

PYTORCH_SUITES = ("pytorch-converted", "pytorch-operator")
SUITES = (*PYTORCH_SUITES, "node")
MODES = ("edgepipe", "raw_onnx2tf")
DATA_ROOT = Path(onnx.__file__).parent / "backend" / "test" / "data"
REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "conformance.md"
EXPECTED = Path(__file__).resolve().parent / "expected_pass_count.json"
REL_TOLERANCE = 1e-4
NHWC_GROUP = "output layout differs (NHWC)"
UNREADABLE_GROUP = "reference data not readable as tensors (sequences, optionals)"
TIMEOUT_S = 240.0  # per model; the slowest PyTorch-suite model takes about 115 s on one core
# Node models the default test run checks (the whole node suite is opt-in): the two whose
# boundary shapes edgepipe restores, and a spread of ops that pass and fail for known reasons.
NODE_SAMPLE = (
    "test_clip",
    "test_concat_2d_axis_negative_2",
    # 12 that edgepipe passed and raw onnx2tf failed on 2026-12-02, drawn at random (seed 0) from the quick ones
    "test_mvn_expanded",
    "test_greater",
    "test_maxpool_2d_pads",
    "test_gridsample_bilinear_align_corners_0_additional_1",
    "test_argmax_keepdims_random",
    "test_div_bcast",
    "test_layer_normalization_3d_axis_negative_3_epsilon_expanded",
    "test_layer_normalization_3d_axis1_epsilon_expanded",
    "test_greater_equal_expanded",
    "test_maxpool_2d_same_upper",
    "test_mvn",
    "test_elu",
    # 12 that both passed
    "test_hardsigmoid_example",
    "test_gemm_alpha",
    "test_layer_normalization_3d_axis_negative_1_epsilon_expanded",
    "test_concat_3d_axis_negative_2",
    "test_layer_normalization_2d_axis0_expanded",
    "test_clip_default_inbounds_expanded",
    "test_gather_elements_0",
    "test_max_int64",
    "test_argmin_no_keepdims_random",
    "test_layer_normalization_4d_axis_negative_2_expanded",
    "test_mean_two_inputs",
    "test_elu_example",
)


@dataclass(frozen=True)
class BackendModel:
    """One test model directory: model.onnx plus test_data_set_*/."""

    name: str
    suite: str
    path: Path

    @property
    def onnx_path(self) -> Path:
        """The model file."""
        return self.path / "model.onnx"


@dataclass(frozen=True)
class Reference:
    """Inputs by graph input name and expected outputs by graph output name (ONNX layout)."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class Check:
    """TFLite outputs against the reference: "match", "match after NHWC->NCHW" or "mismatch"."""

    verdict: str
    max_abs_error: float | None
    detail: str = ""


@dataclass(frozen=True)
class ModelResult:
    """The outcome of one model; group is the failure family used to summarise the suite."""

    name: str
    suite: str
    passed: bool
    reason: str
    max_abs_error: float | None
    seconds: float
    group: str = ""
    tflite_vs_reference: str = "not run"
    boundary: tuple[str, ...] = ()  # edgepipe: the reshapes and transposes its file makes at its boundary


def discover(suites: tuple[str, ...] = PYTORCH_SUITES, root: Path = DATA_ROOT) -> list[BackendModel]:
    """Every model directory of the given suites, sorted by suite then name."""
    return [
        BackendModel(d.name, suite, d)
        for suite in suites
        for d in sorted((root / suite).iterdir())
        if (d / "model.onnx").is_file()
    ]


def node_sample() -> list[BackendModel]:
    """The node models of NODE_SAMPLE, in its order."""
    return [BackendModel(name, "node", DATA_ROOT / "node" / name) for name in NODE_SAMPLE]


def load_tensor(path: Path) -> np.ndarray:
    """A serialized TensorProto file as an array."""
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def load_reference(model: BackendModel) -> Reference:
    """All test data sets of a model, stacked along axis 0 (each set stays one batch-sized chunk)."""
    graph = onnx.load(str(model.onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    in_names = [v.name for v in graph.input if v.name not in initializers]
    out_names = [v.name for v in graph.output]
    sets = sorted(model.path.glob("test_data_set_*"))
    if not sets:
        raise FileNotFoundError(f"{model.name} has no test_data_set_*")

    def stacked(prefix: str, names: list[str]) -> dict[str, np.ndarray]:
        arrays = {n: [load_tensor(s / f"{prefix}_{i}.pb") for s in sets] for i, n in enumerate(names)}
        return {n: a[0] if len(a) == 1 else np.concatenate(a) for n, a in arrays.items()}

    return Reference(stacked("input", in_names), stacked("output", out_names))


def reference_or_failure(model: BackendModel) -> Reference | tuple[bool, str, str, None]:
    """The model's reference data, or the failing verdict of a model whose data are not tensors."""
    try:
        return load_reference(model)
    except Exception as exc:  # sequences and optionals parse as no tensor: no converter gets a fair check
        return False, f"reference data unreadable: {one_line(exc)}", UNREADABLE_GROUP, None


def tolerance(reference: np.ndarray) -> float:
    """The pass rule: max abs error <= 1e-4 * max(1, max |reference|), over the finite reference values."""
    values = np.abs(reference.astype(np.float64))
    values = values[np.isfinite(values)]
    return REL_TOLERANCE * max(1.0, float(values.max()) if values.size else 0.0)


def _max_abs(reference: np.ndarray, got: np.ndarray) -> float:
    """Max abs difference where NaN against NaN (sqrt or pow of a negative) counts as equal."""
    ref, out = reference.astype(np.float64), got.astype(np.float64)
    both_nan = np.isnan(ref) & np.isnan(out)
    same = (ref == out) | both_nan  # also equal infinities, whose difference would be NaN
    diff = np.where(same, 0.0, np.abs(out - ref))
    return float(np.nan_to_num(diff, nan=np.inf).max()) if ref.size else 0.0


def _output_error(ref: np.ndarray, out: np.ndarray) -> tuple[float | None, bool]:
    """(error, read as channels-last): as returned unless the channels-last reading fits better."""
    direct = _max_abs(ref, out) if out.shape == ref.shape else None
    if direct is not None and direct <= tolerance(ref):
        return direct, False
    # onnx2tf may leave a rank >= 3 output channels-last; moving the last axis to 1 undoes that.
    back = np.moveaxis(out, -1, 1) if out.ndim >= 3 else out
    permuted = _max_abs(ref, back) if out.ndim >= 3 and back.shape == ref.shape else None
    if permuted is not None and (direct is None or permuted < direct):
        return permuted, True
    return direct, False


def compare_outputs(reference: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> Check:
    """Every reference output against TFLite's, as returned and, failing that, as channels-last."""
    worst, permuted, problems = None, [], []
    for name, ref in reference.items():
        if name not in got:
            problems.append(f"output {name!r} missing (TFLite has {', '.join(got) or 'none'})")
            continue
        error, as_nhwc = _output_error(ref, np.asarray(got[name]))
        if error is None:
            problems.append(f"output {name!r} has shape {np.shape(got[name])}, reference {ref.shape}")
            continue
        worst = max(worst or 0.0, error)
        if error > tolerance(ref):
            problems.append(
                f"output {name!r} max abs err {error:.3g} > {tolerance(ref):.3g}"
                + (" even read as channels-last" if as_nhwc else "")
            )
        elif as_nhwc:
            permuted.append(name)
    if problems:
        return Check("mismatch", worst, "; ".join(problems))
    if permuted:
        return Check("match after NHWC->NCHW", worst, f"output(s) {', '.join(permuted)} are channels-last")
    return Check("match", worst)


def one_line(exc: BaseException, *paths: Path) -> str:
    """Exception class and first message line, without temporary directories."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for path in paths:
        text = text.replace(f"{path}/", "").replace(str(path), ".")
    text = re.sub(r"(?<![\w.])(/[\w.+-]+)+/", "", text)  # any other absolute path: keep the file name only
    return f"{type(exc).__name__}: {text}"[:300]


def classify(exc: BaseException) -> str:
    """The failure family of an exception raised by the pipeline."""
    text = str(exc)
    if re.search(r"Could not find an implementation for \w+\(\d+\)", text):
        return "ORT refuses old opset (no reference for validation)"
    if "non-builtin op" in text:
        return "Flex op " + (", ".join(sorted(set(re.findall(r"\bFlex\w+", text)))) or "(custom)")
    if "initializer but not in graph input" in text:
        return "ONNX checker rejects model.onnx after onnx2tf rewrote it in place"
    if "len() of unsized object" in text:
        return "--inputs refuses a scalar input (pipeline.core.feeding.load_inputs)"
    if "neither the ONNX shape" in text:
        return f"TFLite {'input' if ': input ' in text else 'output'} shape fits neither layout"
    if "model has 0 Signatures" in text:
        return "TFLite without SignatureDef (ValueError escapes export)"
    if type(exc).__name__ == "ExportError":
        return "onnx2tf error"
    if type(exc).__name__ == "ParityError":
        return "parity: TFLite vs ONNX Runtime"
    return type(exc).__name__


def _exported_tflite(run_dir: Path) -> dict | None:
    """The TFLite record of a run whose export stage completed, even if validation then failed."""
    manifest = run_dir / "manifest.json"
    stage = json.loads(manifest.read_text()).get("stages", {}).get("export") if manifest.is_file() else None
    return next((a for a in stage["result"]["artifacts"] if a["format"] == "tflite"), None) if stage else None


def check_tflite(run_dir: Path, art: dict, reference: Reference) -> Check:
    """Feed the reference inputs to the exported TFLite through edgepipe's feeding and compare."""
    from edgepipe.models.shared.capture import output_to_log
    from edgepipe.pipeline.core.feeding import run_artifact

    if art.get("custom_ops"):
        return Check("mismatch", None, f"needs non-builtin ops {', '.join(art['custom_ops'])}")
    try:
        with output_to_log(run_dir / "logs" / "conformance.log"):  # the interpreter's banner goes to fd 2
            outputs = run_artifact(run_dir / art["path"], art, reference.inputs)
    except Exception as exc:  # a feeding bug must show up as this model's reason, not stop the suite
        return Check("mismatch", None, f"could not run TFLite: {one_line(exc, run_dir)}")
    return compare_outputs(reference.outputs, outputs)


def run_model(model: BackendModel, work_dir: Path, reference: Reference | None = None) -> ModelResult:
    """Export one model through edgepipe into work_dir, validate it, and compare TFLite with the reference."""
    start = time.perf_counter()
    try:
        passed, reason, group, check = _run(model, work_dir, reference)
    except Exception as exc:  # one broken model must not stop the suite
        passed, reason, group, check = False, one_line(exc, work_dir), classify(exc), None
    return ModelResult(
        model.name,
        model.suite,
        passed,
        reason,
        check.max_abs_error if check else None,
        time.perf_counter() - start,
        group,
        check.verdict if check else "not run",
        boundary_fixes(work_dir / "run" / "logs" / "convert.log"),
    )


def boundary_fixes(log_path: Path) -> tuple[str, ...]:
    """What exporters.boundary logged it did at the file's inputs and outputs."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
    return tuple(
        line.removeprefix(LOG_PREFIX)
        for line in lines
        if line.startswith(LOG_PREFIX) and line[len(LOG_PREFIX) :].startswith(("input ", "output "))
    )


def _run(model: BackendModel, work_dir: Path, reference: Reference | None) -> tuple[bool, str, str, Check | None]:
    from edgepipe.pipeline.core.exporting import export_job
    from edgepipe.pipeline.core.runner import EXPORT_ONLY, run_job

    run_dir, reference = work_dir / "run", reference or reference_or_failure(model)
    if not isinstance(reference, Reference):
        return reference
    work_dir.mkdir(parents=True, exist_ok=True)
    inputs = work_dir / "inputs.npz"
    np.savez(inputs, **reference.inputs)
    error: Exception | None = None
    try:
        run_job(export_job(str(model.onnx_path), ("fp32",), inputs), run_dir, only=EXPORT_ONLY)
    except Exception as exc:  # recorded; the TFLite, if written, is still checked for the diagnosis
        error = exc
    art = _exported_tflite(run_dir)
    check = check_tflite(run_dir, art, reference) if art else None
    return (*_verdict(error, check, work_dir, model.path), check)


def _verdict(error: Exception | None, check: Check | None, *paths: Path) -> tuple[bool, str, str]:
    """(passed, reason, group) from the pipeline's exception and the reference comparison."""
    if check and check.verdict.startswith("match after") and (error is None or classify(error).startswith("parity")):
        return check_verdict(check)
    if error is not None:
        note = f" [TFLite vs reference: {check.verdict}{f', {check.detail}' if check.detail else ''}]" if check else ""
        return False, one_line(error, *paths) + note, classify(error)
    if check is None:
        return False, "export recorded no TFLite artifact", "harness error"
    return check_verdict(check)


def check_verdict(check: Check) -> tuple[bool, str, str]:
    """(passed, reason, group) of a reference comparison alone: only "match" passes."""
    if check.verdict.startswith("match after"):
        return False, f"{NHWC_GROUP}: {check.detail}; they match after the inverse permutation", NHWC_GROUP
    if check.verdict != "match":
        group = "output shape differs" if "has shape" in check.detail else "parity: TFLite vs reference"
        return False, f"TFLite differs from the reference: {check.detail}", group
    return True, "", ""


def run_all(
    work_dir: Path,
    models: list[BackendModel] | None = None,
    progress: Callable[[ModelResult], None] | None = None,
    workers: int = 1,
    mode: str = "edgepipe",
    timeout_s: float = TIMEOUT_S,
) -> list[ModelResult]:
    """Run every model in its own sub-directory of work_dir on `workers` warm spawned processes.

    Results are numerics, not timings, so models may share the machine; each worker imports
    TensorFlow and onnx2tf once. A model past timeout_s, or one that kills its worker, fails alone.
    """
    from tests.conformance.isolated import run_isolated
    from tests.conformance.raw_onnx2tf import run_raw_model

    models = models if models is not None else discover()
    fn = run_model if mode == "edgepipe" else run_raw_model
    args = [(model, work_dir / mode / model.suite / model.name) for model in models]
    warm = ("tensorflow", "onnx2tf", *(("edgepipe.pipeline.core.runner",) if mode == "edgepipe" else ()))
    return run_isolated(fn, args, _stopped, timeout_s, workers, warm, progress)


def _stopped(args: tuple, reason: str, seconds: float) -> ModelResult:
    """The result of a model whose worker hung or died."""
    model = args[0]
    group = "timeout" if reason.startswith("timed out") else "worker died"
    return ModelResult(model.name, model.suite, False, reason, None, seconds, group)


def pass_counts(results: list[ModelResult]) -> dict[str, int]:
    """Passing models per suite present in results, and in total."""
    counts = {
        suite: sum(r.passed for r in results if r.suite == suite)
        for suite in SUITES
        if any(r.suite == suite for r in results)
    }
    return {**counts, "total": sum(counts.values())}


def expected_counts(runs: dict[str, list[ModelResult]]) -> dict:
    """expected_pass_count.json: passes per mode and suite, and edgepipe's passes on NODE_SAMPLE."""
    sample = sum(r.passed for r in runs["edgepipe"] if r.suite == "node" and r.name in NODE_SAMPLE)
    return {**{mode: pass_counts(results) for mode, results in runs.items()}, "node_sample": {"edgepipe": sample}}


def main(argv: list[str] | None = None) -> int:
    """Run the suites; with --write, rewrite docs/conformance.md and expected_pass_count.json."""
    from tests.conformance.conformance_doc import render_markdown, source_revision

    parser = argparse.ArgumentParser(prog="python -m tests.conformance.backend_models", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite docs/conformance.md and the recorded pass counts")
    parser.add_argument("-k", dest="pattern", default="", help="only models whose name contains this")
    parser.add_argument("--suite", action="append", choices=SUITES, help="only this suite (repeatable; default all)")
    parser.add_argument("--mode", action="append", choices=MODES, help="only this converter (repeatable; default both)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help=f"seconds per model (default {TIMEOUT_S:.0f})")
    parser.add_argument("--work-dir", type=Path, help="keep run directories here (default: a temporary directory)")
    parser.add_argument("--sample", type=int, help="only this many of the selected models, drawn at random by --seed")
    parser.add_argument("--seed", type=int, default=0, help="the draw of --sample (default 0)")
    args = parser.parse_args(argv)
    suites, modes = tuple(args.suite or SUITES), tuple(args.mode or MODES)
    if args.write and (args.pattern or suites != SUITES or modes != MODES or args.sample):
        parser.error("--write needs every suite in both modes; drop -k, --suite, --mode and --sample")
    if args.write and source_revision().endswith("-dirty"):
        parser.error("--write records the commit it measured: commit or stash the changes to tracked files first")
    models = [m for m in discover(suites) if args.pattern in m.name]
    if args.sample:
        models = sorted(random.Random(args.seed).sample(models, min(args.sample, len(models))), key=lambda m: m.name)

    def progress(r: ModelResult) -> None:
        print(f"{'pass' if r.passed else 'FAIL'} {r.suite}/{r.name} {r.seconds:.1f}s {r.reason}", flush=True)

    runs, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        for mode in modes:
            start = time.perf_counter()
            runs[mode] = run_all(args.work_dir or Path(tmp), models, progress, args.workers, mode, args.timeout)
            seconds[mode] = time.perf_counter() - start
            print(f"{mode}: {pass_counts(runs[mode])} of {len(models)} models in {seconds[mode]:.0f} s", flush=True)
    if len(runs) == 2:
        print_differences(*runs.values())
    if args.write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(render_markdown(runs, seconds, args.workers, args.timeout))
        EXPECTED.write_text(json.dumps(expected_counts(runs), indent=2) + "\n")
    return 0


def print_differences(ours: list[ModelResult], raw: list[ModelResult]) -> None:
    """Each model raw onnx2tf passes and edgepipe fails, with edgepipe's reason (a right file refused, or a
    translation to fix), and how many models each converter alone passes."""
    raw_passed = {(r.suite, r.name) for r in raw if r.passed}
    ours_passed = {(r.suite, r.name) for r in ours if r.passed}
    for r in ours:
        if (r.suite, r.name) in raw_passed and not r.passed:
            print(f"raw onnx2tf only: {r.suite}/{r.name}: [{r.group}] {r.reason}")
    print(f"edgepipe only: {len(ours_passed - raw_passed)}; raw onnx2tf only: {len(raw_passed - ours_passed)}")


if __name__ == "__main__":
    sys.exit(main())
