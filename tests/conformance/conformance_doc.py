"""docs/conformance.md from the results of both converters over every suite."""

from __future__ import annotations

import datetime
import os
import subprocess
from importlib import metadata

from tests.conformance.backend_models import (
    MODES,
    NHWC_GROUP,
    NODE_SAMPLE,
    PYTORCH_SUITES,
    REPO,
    SUITES,
    ModelResult,
    pass_counts,
)
from tests.conformance.raw_onnx2tf import INPUT_GROUP

TOOLS = ("torch", "onnx", "onnxruntime", "onnx2tf", "onnxsim", "tensorflow", "ai-edge-litert")
LABEL = {"edgepipe": "edgepipe", "raw_onnx2tf": "raw onnx2tf"}
NODE_REASON_CHARS = 110


def render_markdown(
    runs: dict[str, list[ModelResult]],
    seconds: dict[str, float],
    workers: int,
    timeout_s: float,
    today: datetime.date | None = None,
) -> str:
    """The whole document: conditions, rules, counts side by side, failure groups, one row per model."""
    lines = (
        _header(seconds, workers, timeout_s, today or datetime.date.today())
        + _totals(runs)
        + _groups(runs)
        + _boundary_note(runs)
    )
    by_name = {mode: {(r.suite, r.name): r for r in results} for mode, results in runs.items()}
    for suite in PYTORCH_SUITES:
        lines += [
            "",
            f"## {suite}",
            "",
            "| model | result | max abs err | TFLite vs reference | s | raw onnx2tf | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            _pytorch_row(r, by_name["raw_onnx2tf"][(suite, r.name)]) for r in runs["edgepipe"] if r.suite == suite
        ]
    lines += [
        "",
        "## node",
        "",
        "edgepipe's reasons cut to their first words (`python -m tests.conformance.backend_models "
        "--suite node -k NAME` prints them whole); raw onnx2tf's by failure family.",
        "",
        "| model | edgepipe | raw onnx2tf | edgepipe's reason | raw onnx2tf's reason |",
        "|---|---|---|---|---|",
    ]
    lines += [_node_row(r, by_name["raw_onnx2tf"][("node", r.name)]) for r in runs["edgepipe"] if r.suite == "node"]
    return "\n".join(lines) + "\n"


def _header(seconds: dict[str, float], workers: int, timeout_s: float, today: datetime.date) -> list[str]:
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    return [
        "# Conformance: ONNX backend test models through edgepipe, beside raw onnx2tf",
        "",
        f"Generated {today.isoformat()}: edgepipe {seconds['edgepipe']:.0f} s, raw onnx2tf "
        f"{seconds['raw_onnx2tf']:.0f} s wall time, on {workers} warm worker process(es) pinned to CPU(s) {cpus} "
        f"at nice {os.nice(0)}, OMP_NUM_THREADS={threads}; each model may take {timeout_s:.0f} s, after which "
        "it fails as a timeout (a model that kills its worker fails alone too). "
        "Regenerate from the repository root with",
        "",
        "```",
        "OMP_NUM_THREADS=1 taskset -c 1 nice -n 10 .venv/bin/python -m tests.conformance.backend_models --write",
        "```",
        "",
        "which also rewrites `tests/conformance/expected_pass_count.json`, the floors that "
        "`tests/conformance/test_onnx_backend.py` enforces: the PyTorch suites always, "
        f"{len(NODE_SAMPLE)} named node models always, and the whole node suite with "
        "`EDGEPIPE_NODE_SUITE=1` (`--suite`, `--mode` and `-k NAME` without `--write` run a subset).",
        "",
        "Every model directory under `onnx/backend/test/data/pytorch-converted/`, `pytorch-operator/` and "
        "`node/` is converted twice:",
        "",
        "- **edgepipe**: the in-process path of `edgepipe export model.onnx --variant fp32 --inputs X.npz`: "
        "onnx2tf to TFLite fp32 with no Flex or custom op allowed, then validation of the TFLite against ONNX "
        "Runtime on the model's reference inputs; the file is then run on those inputs through edgepipe's "
        "feeding, which converts inputs and outputs through the layouts the export recorded.",
        "- **raw onnx2tf**: `onnx2tf.convert(input_onnx_file_path=..., output_folder_path=..., non_verbose=True)` "
        "with every other option at its default (onnxsim on PATH, so onnx2tf runs it as it does in an activated "
        "venv), offline: a seeded random `calibration_image_sample_data_20x128x128x3_float32.npy` sits in the "
        "working directory, so onnx2tf never downloads it. Its `model_float32.tflite` is run with "
        "`ai_edge_litert`'s Interpreter.",
        "",
        "**Feeding rule (both).** Each file input is matched to an ONNX input by its signature name, or by "
        "position when the file's names are not the ONNX names, and is fed the reference input in the ONNX "
        "shape, or transposed channels-first -> channels-last (axis 1 to the end) when that is the shape the "
        "file takes, which is what onnx2tf does to 3-D to 5-D inputs; edgepipe's record says exactly this per "
        "input. An input whose shape in the file is neither (a scalar taken as `(1,)`) cannot be fed: "
        f'"{INPUT_GROUP}" for raw onnx2tf; edgepipe refuses such a file at export.',
        "",
        "**Pass rule (both).** The conversion succeeds, the file needs no Flex/custom op, and every output, "
        "as the converter's user gets it (edgepipe: through its recorded layout; raw onnx2tf: as the file "
        "gives it), has max abs error <= 1e-4 * max(1, max |reference|) against the reference output stored "
        "with the model (PyTorch's for the PyTorch suites, ONNX's reference implementation's for the node "
        "suite; over finite reference values; NaN where the reference has NaN counts as equal). An output "
        f'that matches only after moving its last axis to position 1 fails as "{NHWC_GROUP}". For edgepipe, '
        "validation against ONNX Runtime must pass too. *TFLite vs reference* is the comparison, made whenever "
        "a file was written, even if validation failed first; *max abs err* is its worst output error.",
        "",
        f"Source: git {source_revision()}. Tools: " + ", ".join(f"{k} {_version(k)}" for k in TOOLS) + ".",
        "",
    ]


def _totals(runs: dict[str, list[ModelResult]]) -> list[str]:
    counts = {mode: pass_counts(results) for mode, results in runs.items()}
    lines = [
        "| suite | models | edgepipe pass | edgepipe fail | raw onnx2tf pass | raw onnx2tf fail |",
        "|---|---|---|---|---|---|",
    ]
    for suite in [*SUITES, "total"]:
        n = sum(suite in (r.suite, "total") for r in runs["edgepipe"])
        cells = [f"{counts[m][suite]} | {n - counts[m][suite]}" for m in MODES]
        lines.append(f"| {suite} | {n} | {' | '.join(cells)} |")
    raw = {(r.suite, r.name): r.passed for r in runs["raw_onnx2tf"]}
    both = sum(r.passed and raw[(r.suite, r.name)] for r in runs["edgepipe"])
    only_ours = sum(r.passed and not raw[(r.suite, r.name)] for r in runs["edgepipe"])
    only_raw = sum(not r.passed and raw[(r.suite, r.name)] for r in runs["edgepipe"])
    return lines + [
        "",
        f"Over all suites, {both} models pass with both, {only_ours} with edgepipe only and "
        f"{only_raw} with raw onnx2tf only.",
        "",
    ]


def _groups(runs: dict[str, list[ModelResult]]) -> list[str]:
    """Failure families with their counts per converter; edgepipe's PyTorch-suite failures by name."""
    counts: dict[str, dict[str, int]] = {}
    for mode, results in runs.items():
        for r in results:
            if not r.passed:
                counts.setdefault(r.group, dict.fromkeys(MODES, 0))[mode] += 1
    lines = ["## Failures by reason", "", "| reason | edgepipe | raw onnx2tf |", "|---|---|---|"]
    lines += [
        f"| {group} | {c['edgepipe']} | {c['raw_onnx2tf']} |"
        for group, c in sorted(counts.items(), key=lambda g: (-sum(g[1].values()), g[0]))
    ]
    names: dict[str, list[str]] = {}
    for r in runs["edgepipe"]:
        if not r.passed and r.suite in PYTORCH_SUITES:
            names.setdefault(r.group, []).append(r.name)
    lines += ["", "edgepipe's failures in the PyTorch suites:", ""]
    lines += [
        f"- **{group}** ({len(ns)}): {', '.join(ns)}"
        for group, ns in sorted(names.items(), key=lambda g: (-len(g[1]), g[0]))
    ]
    return lines + (["None."] if not names else [])


def _boundary_note(runs: dict[str, list[ModelResult]]) -> list[str]:
    fixed = [r for r in runs["edgepipe"] if r.boundary]
    if not fixed:
        return []
    lines = [
        "",
        "## Boundary shapes edgepipe restored",
        "",
        "Where onnx2tf's model took or gave a tensor in a shape that is neither the ONNX shape nor its "
        "channels-last form, edgepipe's file reshapes or transposes at its boundary (recorded per tensor "
        "in the export's `boundary`; any reshape other than adding or dropping unit axes, and any "
        "transpose, only when onnx2tf's model then reproduces ONNX Runtime on seeded inputs):",
        "",
        "| model | result | fixes |",
        "|---|---|---|",
    ]
    return lines + [f"| {r.name} | {'pass' if r.passed else 'FAIL'} | {'; '.join(r.boundary)} |" for r in fixed]


def _pytorch_row(r: ModelResult, raw: ModelResult) -> str:
    error = "" if r.max_abs_error is None else f"{r.max_abs_error:.2g}"
    return (
        f"| {r.name} | {_verdict(r)} | {error} | {r.tflite_vs_reference} | {r.seconds:.1f} | {_raw_cell(raw)} "
        f"| {_cell(r.reason)} |"
    )


def _node_row(r: ModelResult, raw: ModelResult) -> str:
    return (
        f"| {r.name} | {_verdict(r)} | {_verdict(raw)} | {_cell(_cut(r.reason))} | "
        f"{'' if raw.passed else _cell(raw.group)} |"
    )


def _raw_cell(raw: ModelResult) -> str:
    return "pass" if raw.passed else f"FAIL ({raw.group})"


def _verdict(r: ModelResult) -> str:
    return "pass" if r.passed else "FAIL"


def _cut(text: str) -> str:
    return text if len(text) <= NODE_REASON_CHARS else text[:NODE_REASON_CHARS].rsplit(" ", 1)[0] + " ..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _version(tool: str) -> str:
    try:
        return metadata.version(tool)
    except metadata.PackageNotFoundError:
        return "not installed"


def source_revision() -> str:
    """The checked-out commit, "-dirty" when tracked files differ from it (others' work in progress)."""
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
