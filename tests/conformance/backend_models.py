"""edgepipe's ONNX -> TFLite export over the onnx package's PyTorch backend test models.

Each model takes the in-process path of `edgepipe export FILE.onnx --inputs X.npz`; then the TFLite
outputs are compared with the reference outputs stored next to the model (computed by PyTorch).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

SUITES = ("pytorch-converted", "pytorch-operator")
DATA_ROOT = Path(onnx.__file__).parent / "backend" / "test" / "data"
REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "conformance.md"
EXPECTED = Path(__file__).resolve().parent / "expected_pass_count.json"
REL_TOLERANCE = 1e-4
TOOLS = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert")
NHWC_GROUP = "output layout differs (NHWC)"


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


def discover(root: Path = DATA_ROOT) -> list[BackendModel]:
    """Every model directory of the two PyTorch suites, sorted by suite then name."""
    return [BackendModel(d.name, suite, d) for suite in SUITES
            for d in sorted((root / suite).iterdir()) if (d / "model.onnx").is_file()]


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
            problems.append(f"output {name!r} max abs err {error:.3g} > {tolerance(ref):.3g}"
                            + (" even read as channels-last" if as_nhwc else ""))
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
    if "neither the ONNX shape" in text:
        return "TFLite output shape fits neither layout"
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
    from models.capture import output_to_log
    from pipeline.feeding import run_artifact

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
    return ModelResult(model.name, model.suite, passed, reason, check.max_abs_error if check else None,
                       time.perf_counter() - start, group, check.verdict if check else "not run")


def _run(model: BackendModel, work_dir: Path, reference: Reference | None) -> tuple[bool, str, str, Check | None]:
    from pipeline.exporting import export_job
    from pipeline.runner import EXPORT_ONLY, run_job

    run_dir, reference = work_dir / "run", reference or load_reference(model)
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
        return False, f"{NHWC_GROUP}: {check.detail}; they match after the inverse permutation", NHWC_GROUP
    if error is not None:
        note = f" [TFLite vs reference: {check.verdict}{f', {check.detail}' if check.detail else ''}]" if check else ""
        return False, one_line(error, *paths) + note, classify(error)
    if check is None:
        return False, "export recorded no TFLite artifact", "harness error"
    if check.verdict != "match":
        return False, f"TFLite differs from the PyTorch reference: {check.detail}", "parity: TFLite vs reference"
    return True, "", ""


def run_all(work_dir: Path, models: list[BackendModel] | None = None,
            progress: Callable[[ModelResult], None] | None = None, workers: int = 1) -> list[ModelResult]:
    """Run every model, each in its own sub-directory of work_dir, on `workers` spawned processes.

    Results are numerics, not timings, so models may share the machine; each worker imports
    TensorFlow and onnx2tf once.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    models = models if models is not None else discover()
    dirs = [work_dir / model.suite / model.name for model in models]
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    results = []
    try:
        for result in (pool.map if pool else map)(run_model, models, dirs):
            results.append(result)
            if progress:
                progress(result)
    finally:
        if pool:
            pool.shutdown()
    return results


def pass_counts(results: list[ModelResult]) -> dict[str, int]:
    """Passing models per suite and in total, the shape of expected_pass_count.json."""
    counts = {suite: sum(r.passed for r in results if r.suite == suite) for suite in SUITES}
    return {**counts, "total": sum(counts.values())}


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools the outcome depends on."""
    return {tool: _version(tool) for tool in TOOLS}


def _version(tool: str) -> str:
    try:
        return metadata.version(tool)
    except metadata.PackageNotFoundError:
        return "not installed"


def _revision() -> str:
    """The checked-out commit, "-dirty" when tracked files differ from it (others' work in progress)."""
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def _row(r: ModelResult) -> str:
    error = "" if r.max_abs_error is None else f"{r.max_abs_error:.2g}"
    reason = r.reason.replace("|", "\\|").replace("\n", " ")
    verdict = "pass" if r.passed else "FAIL"
    return f"| {r.name} | {verdict} | {error} | {r.tflite_vs_reference} | {r.seconds:.1f} | {reason} |"


def render_markdown(results: list[ModelResult], seconds: float, today: datetime.date | None = None) -> str:
    """docs/conformance.md: rule, versions, totals, failure groups and one row per model."""
    lines = _header(seconds, today or datetime.date.today()) + _totals(results) + _group_section(results)
    for suite in SUITES:
        lines += ["", f"## {suite}", "", "| model | result | max abs err | TFLite vs reference | s | reason |",
                  "|---|---|---|---|---|---|"]
        lines += [_row(r) for r in results if r.suite == suite]
    return "\n".join(lines) + "\n"


def _header(seconds: float, today: datetime.date) -> list[str]:
    return [
        "# Conformance: ONNX backend test models (PyTorch suites) through edgepipe",
        "",
        f"Generated {today.isoformat()} in {seconds:.0f} s (one process, TensorFlow imported once). "
        "Regenerate from the repository root with",
        "",
        "```",
        ".venv/bin/python -m tests.conformance.backend_models --write",
        "```",
        "",
        "which also rewrites `tests/conformance/expected_pass_count.json`, the floor that "
        "`tests/conformance/test_onnx_backend.py` enforces (`-k NAME` without `--write` runs a subset).",
        "",
        "Each model under `onnx/backend/test/data/pytorch-converted/` and `pytorch-operator/` goes through "
        "edgepipe's own path, in-process, exactly as `edgepipe export model.onnx --variant fp32 --inputs X.npz`: "
        "onnx2tf to TFLite fp32 with no Flex or custom op allowed, then validation of the TFLite against "
        "ONNX Runtime on the model's reference inputs. The TFLite outputs are then compared with the "
        "reference outputs stored with the model, which PyTorch computed.",
        "",
        "**Pass rule.** Export and validation succeed, the TFLite needs no Flex/custom op, and every TFLite "
        "output, as edgepipe returns it, has max abs error <= 1e-4 * max(1, max |reference|) against the "
        "reference output (over finite reference values; NaN where the reference has NaN counts as equal). "
        "An output that matches only after moving its last axis to position 1 fails as "
        f"\"{NHWC_GROUP}\". The column *TFLite vs reference* is that comparison, made whenever a TFLite "
        "file was written, even if validation failed first (e.g. ONNX Runtime refused the model); "
        "*max abs err* is its worst output error.",
        "",
        f"Source: git {_revision()}. Tools: " + ", ".join(f"{k} {v}" for k, v in tool_versions().items()) + ".",
        "",
    ]


def _totals(results: list[ModelResult]) -> list[str]:
    counts = pass_counts(results)
    lines = ["| suite | models | pass | fail |", "|---|---|---|---|"]
    for suite in [*SUITES, "total"]:
        n = sum(suite in (r.suite, "total") for r in results)
        lines.append(f"| {suite} | {n} | {counts[suite]} | {n - counts[suite]} |")
    failed = [r for r in results if not r.passed]
    as_is = sum(r.tflite_vs_reference == "match" for r in failed)
    permuted = sum(r.tflite_vs_reference.startswith("match after") for r in failed)
    return lines + ["", f"Of the {len(failed)} failures, {as_is} wrote a TFLite whose outputs match the reference "
                        f"as returned and {permuted} one that matches after NHWC->NCHW.", ""]


def _group_section(results: list[ModelResult]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for r in results:
        if not r.passed:
            groups.setdefault(r.group, []).append(r.name)
    lines = ["## Failures by reason", ""]
    for group, names in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        lines.append(f"- **{group}** ({len(names)}): {', '.join(names)}")
    return lines if groups else lines + ["None."]


def main(argv: list[str] | None = None) -> int:
    """Run the suite; with --write, rewrite docs/conformance.md and expected_pass_count.json."""
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.backend_models", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite docs/conformance.md and the recorded pass count")
    parser.add_argument("-k", dest="pattern", default="", help="only models whose name contains this")
    parser.add_argument("--work-dir", type=Path, help="keep run directories here (default: a temporary directory)")
    args = parser.parse_args(argv)
    models = [m for m in discover() if args.pattern in m.name]
    if args.write and args.pattern:
        parser.error("--write needs the whole suite; drop -k")

    def progress(r: ModelResult) -> None:
        print(f"{'pass' if r.passed else 'FAIL'} {r.suite}/{r.name} {r.seconds:.1f}s {r.reason}", flush=True)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        results = run_all(args.work_dir or Path(tmp), models, progress)
    seconds = time.perf_counter() - start
    counts = pass_counts(results)
    print(f"{counts} of {len(results)} models in {seconds:.0f} s", flush=True)
    if args.write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(render_markdown(results, seconds))
        EXPECTED.write_text(json.dumps(counts, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
