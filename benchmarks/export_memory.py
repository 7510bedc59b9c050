"""Peak memory of `edgepipe export` (default, and --converter in_process) beside litert-torch's, side by side.

Usage: python benchmarks/export_memory.py [--models a,b,...] [--litert-venv DIR] [--no-litert]
                                          [--work DIR] [--json FILE]

Per model, one after another in this one run, each conversion alone: `edgepipe export
real_model_zoo:NAME --variant fp32` with the default converter (a child process), the same with
`--converter in_process`, and litert-torch 0.10 in its own venv (benchmarks/litert_torch_child.py).
Peak memory is the largest sum of VmRSS over the process and every process it started, sampled
every 0.05 s (issue 32's measure); beside it, the sum of each process's own VmHWM, an upper bound
(their peaks need not coincide). For edgepipe it then prints the export and validate stages' phases
as the manifest records them (pipeline/core/memory.py). Memory figures hold on a busy machine;
the seconds do not (measure those on a quiet one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from real_models import _last_line, ensure_litert_venv, timed  # noqa: E402

DEFAULT_MODELS = "resnet18,lraspp_mobilenet_v3_large,convnext_tiny"


def measured(cmd: list[str], out_path: Path, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run a child to completion (real_models.timed): seconds, exit code, the largest sampled sum of VmRSS
    over its process tree and the sum of each process's VmHWM (MiB); stdout in out_path, stderr beside it."""
    run = timed(cmd, out_path, env, cwd)
    peaks = {"peak_mib": run["peak_sum_mb"], "hwm_sum_mib": run["peak_rss_mb"]}
    return {"seconds": run["seconds"], "rc": run["rc"], **peaks}


def edgepipe_export(name: str, work: Path, converter: str) -> dict:
    """`edgepipe export real_model_zoo:NAME --variant fp32 --converter CONVERTER --json` as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    out = work / f"edgepipe_{converter}"
    cmd = [sys.executable, "-m", "edgepipe.pipeline", "export", f"real_model_zoo:{name}", "--variant", "fp32"]
    run = measured([*cmd, "--converter", converter, "-o", str(out), "--json"], work / f"{converter}.json", env, work)
    if run["rc"] != 0:
        return {**run, "error": _last_line(work / f"{converter}.err")}
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    return {**run, "stages": {s: stages[s].get("memory", {}) for s in ("export", "validate") if s in stages}}


def litert_export(name: str, work: Path, python: Path) -> dict:
    """litert-torch's conversion of the same model, seeded the same way, in its own venv."""
    out = work / f"{name}_litert.tflite"
    run = measured([str(python), str(ROOT / "benchmarks/litert_torch_child.py"), name, str(out)], work / "litert.json")
    return {**run, "error": _last_line(work / "litert.err")} if run["rc"] != 0 else run


def warm_up(litert_python: Path | None) -> None:
    """Import each stack once, so that the first measured export does not read it from a cold disk."""
    subprocess.run([sys.executable, "-c", "import torch, tensorflow, onnx2tf, onnxruntime"], check=True)
    if litert_python is not None:
        subprocess.run([str(litert_python), "-c", "import torch, litert_torch"], check=True)


def markdown(rows: list[dict]) -> str:
    """One line per model: each peak in MiB, and its ratio to litert-torch's."""
    head = (
        "| model | edgepipe default: peak MiB (ratio) | in_process: peak MiB (ratio) | litert-torch peak MiB | "
        "sum of VmHWM MiB (default / in_process / litert) | seconds (default / in_process / litert) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        runs = [r["default"], r["in_process"], r.get("litert") or {}]
        cells = [_peak(run, runs[2]) for run in runs[:2]]
        lines.append(
            f"| {r['model']} | {cells[0]} | {cells[1]} | {_peak(runs[2], None)} | "
            f"{' / '.join(_figure(run, 'hwm_sum_mib') for run in runs)} | "
            f"{' / '.join(_figure(run, 'seconds') for run in runs)} |"
        )
    return "\n".join(lines)


def _peak(run: dict, litert: dict | None) -> str:
    if "error" in run:
        return f"failed: {run['error'][:80]}"
    if "peak_mib" not in run:
        return "-"
    ok = litert and "error" not in litert and litert.get("peak_mib")
    return f"{run['peak_mib']:.0f}" + (f" ({run['peak_mib'] / litert['peak_mib']:.2f}x)" if ok else "")


def _figure(run: dict, key: str) -> str:
    return "-" if "error" in run or key not in run else f"{run[key]:.0f}"


def phases(rows: list[dict]) -> str:
    """Each edgepipe run's phases as its manifest records them (MiB; 'sum' is sampled every 0.2 s)."""
    lines = []
    for r in rows:
        for converter in ("default", "in_process"):
            for stage, memory in r[converter].get("stages", {}).items():
                lines += [f"\n{r['model']}, {converter}, {stage} stage:", "| phase | s | edgepipe | child | sum |"]
                lines.append("|---|---|---|---|---|")
                lines += [
                    f"| {p['phase']} | {p['seconds']:.1f} | {p['edgepipe_mib']:.0f} | {p['children_mib']:.0f} | "
                    f"{p['sum_mib']:.0f} |"
                    for p in memory.get("phases", [])
                ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--litert-venv", type=Path, default=ROOT / ".venv-litert-torch")
    parser.add_argument("--no-litert", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="export-memory-"))
    python = None if args.no_litert else ensure_litert_venv(args.litert_venv)
    warm_up(python)
    rows = []
    for name in args.models.split(","):
        where = work / name
        where.mkdir(parents=True, exist_ok=True)
        row = {"model": name}
        row["default"] = edgepipe_export(name, where, "auto")
        row["in_process"] = edgepipe_export(name, where, "in_process")
        if python is not None:
            row["litert"] = litert_export(name, where, python)
        rows.append(row)
        print(markdown([row]).splitlines()[-1], file=sys.stderr, flush=True)
        if args.json:  # after every model: a long run cut short keeps what it measured
            args.json.write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    print(phases(rows))
    load = os.getloadavg()
    print(
        f"\nload average at the end (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
        f"{os.cpu_count()} cores; work dir {work}"
    )


if __name__ == "__main__":
    main()
