"""int8_mixed on real torchvision and timm networks (random weights) through `edgepipe run` (issue 32).

Usage: python benchmarks/int8_mixed_search.py [--models mobilevit_xxs:256,resnet18] [--samples 200]
                                              [--floor 20] [--work DIR] [--markdown FILE]

Needs the model libraries (`make real-models`). Each model is given as the factory real_model_zoo:NAME
at NAME:SIZE (default 224), calibrated on --samples seeded standard-normal images from an .npz, with
variants = ["int8_mixed"] and [validate] quantized_min_sqnr_db = --floor (a floor int8 misses makes
the search add layers). Per model: the whole run's wall time and the export stage's, how many layers
the int8 conversion quantized, how many files the layer search measured (groups, layers alone,
steps of the choice), the steps' SQNR, whether the target was met, and the ledger's SQNR against
PyTorch. A run whose validation fails on the floor still reports its export.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from real_models import timed  # noqa: E402

JOB = """
[job]
name = "{name}"
model = "real_model_zoo:{name}"
inputs = ["1x3x{size}x{size}"]

[train]
threads = 1

[compress]
prune = "none"

[export]
variants = ["int8_mixed"]
calibration = "calibration.npz"
calibration_samples = {samples}

[validate]
quantized_min_sqnr_db = {floor}
"""


def search_one(model: str, samples: int, floor: float, work: Path) -> dict:
    """One `edgepipe run` of int8_mixed and what its search measured."""
    name, _, size = model.partition(":")
    size = int(size or 224)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(work / "calibration.npz", x=rng.standard_normal((samples, 3, size, size), dtype=np.float32))
    (work / "job.toml").write_text(JOB.format(name=name, size=size, samples=samples, floor=floor))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    cmd = [str(Path(sys.executable).with_name("edgepipe")), "run", "job.toml", "-o", "run", "--json"]
    run = timed(cmd, work / "edgepipe.json", env=env, cwd=work)
    manifest = work / "run/manifest.json"
    stages = json.loads(manifest.read_text())["stages"] if manifest.is_file() else {}
    if "export" not in stages:
        lines = (work / "edgepipe.err").read_text().strip().splitlines()
        return {"model": model, **run, "error": lines[-1] if lines else f"exit {run['rc']}"}
    artifact = next(a for a in stages["export"]["result"]["artifacts"] if a.get("variant") == "int8_mixed")
    choice = artifact["mixed_choice"]
    ledger = stages.get("validate", {}).get("result", {}).get("ledger", {}).get("tflite:int8_mixed", {})
    return {
        "model": model,
        **run,
        "export_seconds": stages["export"]["seconds"],
        "layers": choice["layers_quantized"],
        "groups": choice["group_measurements"],
        "alone": choice["layers_measured"],
        "steps": [step["sqnr_db"] for step in choice["steps"]],
        "kept": len(artifact["kept_float"]),
        "met": choice["met"],
        "target": choice["target_sqnr_db"],
        "search_samples": choice["search_samples"],
        "ledger_sqnr_db": ledger.get("sqnr_db"),
    }


def markdown(rows: list[dict], samples: int, floor: float, load: str) -> str:
    """One table row per model."""
    lines = [
        f"{samples} calibration samples, [validate] quantized_min_sqnr_db = {floor}, random weights; "
        f"load average {load}.",
        "",
        "| model | layers quantized | groups measured | layers measured alone | steps (dB, search samples) | "
        "kept float | met | ledger dB vs torch | export s | run s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error'][:140]} | | | | | | | | {r['seconds']:.0f} |")
            continue
        steps = ", ".join("-" if s is None else f"{s:.1f}" for s in r["steps"])
        ledger = "-" if r["ledger_sqnr_db"] is None else f"{r['ledger_sqnr_db']:.1f}"
        lines.append(
            f"| {r['model']} | {r['layers']} | {r['groups']} | {r['alone']} | {steps} ({r['search_samples']}) | "
            f"{r['kept']} | {r['met']} (target {r['target']:.1f}) | {ledger} | {r['export_seconds']:.0f} | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilevit_xxs:256,resnet18")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--floor", type=float, default=20.0)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="int8-mixed-"))
    rows = []
    for model in args.models.split(","):
        rows.append(search_one(model, args.samples, args.floor, work / model.replace(":", "_")))
        print(json.dumps(rows[-1]), file=sys.stderr)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    text = markdown(rows, args.samples, args.floor, load)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
