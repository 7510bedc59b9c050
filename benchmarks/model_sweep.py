"""Sweep every mobile- or edge-sized torchvision and timm model through edgepipe and litert-torch.

Usage: python benchmarks/model_sweep.py [--results FILE.jsonl] [--markdown FILE] [--minutes M]
                                        [--timeout S] [--only a,b] [--litert-venv DIR] [--report]

The names are real_model_zoo.sweep_names() (its SWEEP_PATTERN over torchvision's and timm's model
lists), run smallest first by parameter count, at each one's default input. Per model it runs the
whole `edgepipe export NAME --variant fp32` process and litert-torch's conversion, as
benchmarks/real_models.py does (wall time, summed VmHWM of the process tree), and compares the two
files' outputs on one seeded input; it does not time latency. Each result is appended to --results
as one JSON line as soon as it is measured, and a later run skips the names already there, so the
sweep can be run in parts. --markdown writes the table of every name, run or not yet run (--report:
only that, from the results so far).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import real_model_zoo  # noqa: E402
import real_models  # noqa: E402


def parameters_millions(name: str) -> float | None:
    """The model's parameter count, built on the meta device (no memory, no weights); None if it cannot be."""
    import torch

    try:
        with torch.device("meta"):
            module = real_model_zoo.construct(name)
    except Exception:  # noqa: BLE001 - a model that cannot be built is run (and fails) last
        return None
    return sum(p.numel() for p in module.parameters()) / 1e6


def plan(names: list[str]) -> list[dict]:
    """Each name with its library, parameters and input, smallest first (unbuildable ones last)."""
    rows = []
    for name in names:
        rows.append(
            {
                "model": name,
                "library": real_model_zoo.source(name)[0],
                "params_m": parameters_millions(name),
                "input": list(real_model_zoo.input_shape(name)),
            }
        )
    return sorted(rows, key=lambda r: (r["params_m"] is None, r["params_m"] or 0.0, r["model"]))


def run_one(row: dict, work: Path, python: Path, timeout: float) -> dict:
    """Both conversions of one model, then the two files' outputs compared; the work files are deleted."""
    where = work / row["model"]
    where.mkdir(parents=True, exist_ok=True)
    try:
        ours = real_models.edgepipe_export(row["model"], where, timeout=timeout)
        theirs = real_models.litert_export(row["model"], where, python, timeout=timeout)
        found = {**row, "edgepipe": ours, "litert": theirs}
        if "error" not in ours:
            try:
                found["files"] = real_models.compare_files(ours, theirs, latency=False)
            except Exception as exc:  # noqa: BLE001 - files that cannot be compared are recorded, not fatal
                found["files"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            ours["path"] = Path(ours["path"]).name
        if "path" in theirs:
            theirs["path"] = Path(theirs["path"]).name
        return found
    finally:
        shutil.rmtree(where, ignore_errors=True)


def outcome(side: dict) -> str:
    """One cell: ok, failed with its last line, or not run."""
    if not side:
        return "not run"
    if "error" in side:
        said = re.sub(r"/\S*/", ".../", side["error"])  # a path's folders say nothing about the failure
        return f"failed: {said[:100]}".replace("|", "/")
    return "ok"


def markdown(planned: list[dict], done: dict[str, dict]) -> str:
    """Every planned name, measured or not yet, and the counts."""
    head = (
        "| model | library | params M | input | edgepipe | litert-torch | export s (e / l) | peak MiB (e / l) "
        "| outputs cosine |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines += [_row(p, done.get(p["model"], {})) for p in planned]
    return "\n".join(lines) + "\n\n" + summary(planned, done)


def _row(planned: dict, found: dict) -> str:
    """One model's table row; its figures are empty until it has run."""
    sides = [found.get("edgepipe") or {}, found.get("litert") or {}]
    seconds = " / ".join(f"{s['seconds']:.0f}" for s in sides) if found else ""
    peaks = " / ".join(f"{s['peak_rss_mb']:.0f}" for s in sides) if found else ""
    cosine = found.get("files", {}).get("outputs_cosine")
    params = f"{planned['params_m']:.2f}" if planned["params_m"] is not None else "?"
    return (
        f"| {planned['model']} | {planned['library']} | {params} | {'x'.join(map(str, planned['input'][2:]))} | "
        f"{outcome(sides[0])} | {outcome(sides[1])} | {seconds} | {peaks} | "
        f"{f'{cosine:.6f}' if cosine is not None else ''} |"
    )


def summary(planned: list[dict], done: dict[str, dict]) -> str:
    """Counts over the names measured so far."""
    run = [done[p["model"]] for p in planned if p["model"] in done]
    ours = {r["model"] for r in run if "error" not in r["edgepipe"]}
    theirs = {r["model"] for r in run if "error" not in r["litert"]}
    return (
        f"Run: {len(run)} of {len(planned)}. edgepipe converts {len(ours)}, litert-torch {len(theirs)}; "
        f"both {len(ours & theirs)}, edgepipe only {len(ours - theirs)}, litert-torch only {len(theirs - ours)}, "
        f"neither {len(run) - len(ours | theirs)}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/model_sweep.jsonl")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--minutes", type=float, default=0.0, help="stop starting models after this (0: run all)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per conversion before it is killed")
    parser.add_argument("--only", default="", help="comma-separated names instead of the whole sweep")
    parser.add_argument("--litert-venv", type=Path, default=ROOT / ".venv-litert-torch")
    parser.add_argument("--report", action="store_true", help="only write --markdown from --results; convert nothing")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else real_model_zoo.sweep_names()
    planned = plan(names)
    done = {}
    if args.results.exists():
        done = {r["model"]: r for r in map(json.loads, args.results.read_text().splitlines()) if r}
    if args.report:
        if args.markdown:
            args.markdown.write_text(markdown(planned, done) + "\n")
        print(summary(planned, done))
        return
    python = real_models.ensure_litert_venv(args.litert_venv)
    real_models.warm_up(python)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="model-sweep-"))
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else float("inf")
    for row in planned:
        if row["model"] in done:
            continue
        if time.monotonic() > deadline:
            break
        found = run_one(row, work, python, args.timeout)
        found["load_average"] = os.getloadavg()[0]
        done[row["model"]] = found
        with args.results.open("a") as out:
            out.write(json.dumps(found) + "\n")
        print(_row(row, found), file=sys.stderr, flush=True)
        if args.markdown:
            args.markdown.write_text(markdown(planned, done) + "\n")
    print(summary(planned, done))


if __name__ == "__main__":
    main()
