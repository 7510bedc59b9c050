"""Channel pruning of real torchvision and timm networks (random weights) through `edgepipe run`.

Usage: python benchmarks/prune_real_models.py [--models a,b,...] [--amount 0.5] [--work DIR] [--markdown FILE]

Needs the model libraries (`make real-models`). Each model is given as the factory real_model_zoo:NAME
with [compress] prune = "channels", prune_amount = --amount and finetune_epochs = 0 (nothing to
recover on: random weights), fp32 only. Per model: whether the run passed (the pruned model's ledger
against its own PyTorch module), parameters and MACs against the unpruned model, the pruned fp32
file's size against the uncompressed fp32 file the run also writes, its host p50 latency timed
interleaved with that file on one thread, the layers kept whole and the whole run's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from real_models import timed  # noqa: E402

MODELS = (
    "resnet18,efficientnet_b0,convnext_tiny,mobilevit_xxs,shufflenet_v2_x1_0,deit_tiny_patch16_224,"
    "ghostnet_100,regnet_y_400mf"
)
JOB = """
[job]
name = "{name}"
model = "real_model_zoo:{name}"

[compress]
prune = "channels"
prune_amount = {amount}
finetune_epochs = 0

[export]
variants = ["fp32"]

[profile]
runtimes = ["tflite"]
min_seconds = 0.5
op_profile = false
throughput_batches = []
"""


def prune_one(name: str, amount: float, work: Path) -> dict:
    """One `edgepipe run` and its figures."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.toml").write_text(JOB.format(name=name, amount=amount))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    cmd = [str(ROOT / ".venv/bin/edgepipe"), "run", "job.toml", "-o", "run", "--json"]
    run = timed(cmd, work / "edgepipe.json", env=env, cwd=work)
    if run["rc"] != 0:
        lines = (work / "edgepipe.err").read_text().strip().splitlines()
        return {"model": name, **run, "error": lines[-1] if lines else f"exit {run['rc']}"}
    manifest = json.loads((work / "run/manifest.json").read_text())
    stages = {stage: s["result"] for stage, s in manifest["stages"].items()}
    sizes = {a["path"]: a["size_bytes"] for a in manifest["artifacts"]}
    compress, ledger = stages["compress"], stages["validate"]["ledger"]
    step = compress["steps"][0]
    vs = next(r["vs_uncompressed"] for r in stages["profile"]["results"] if r["variant"] == "fp32")
    return {
        "model": name,
        **run,
        "ok": all(h["ok"] for h in ledger.values()),
        "cosine": ledger["tflite:fp32"]["cosine"],
        "params": compress["compressed"]["parameters"] / compress["trained"]["parameters"],
        "macs": compress["compressed"]["macs"] / compress["trained"]["macs"],
        "size": sizes["model_fp32.tflite"] / sizes["uncompressed/model_fp32.tflite"],
        "latency": (vs["p50_ratio"], vs["p50_ratio_ci95"]),
        "kept_whole": len(step["kept_whole"]),
    }


def markdown(rows: list[dict], amount: float, load: str) -> str:
    """One table row per model."""
    lines = [
        f"prune_amount = {amount}, finetune_epochs = 0, random weights, 224x224; load average {load}.",
        "",
        "| model | ledger ok | cosine vs torch | params | MACs | fp32 file | host p50 (interleaved) | kept whole "
        "| run s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error'][:140]} | | | | | | | {r['seconds']:.0f} |")
            continue
        ratio, (low, high) = r["latency"]
        lines.append(
            f"| {r['model']} | {r['ok']} | {r['cosine']:.6f} | {r['params']:.2f}x | {r['macs']:.2f}x | "
            f"{r['size']:.2f}x | {ratio:.2f}x [{low:.2f}, {high:.2f}] | {r['kept_whole']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="prune-real-"))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    for name in args.models.split(","):
        rows.append(prune_one(name, args.amount, work / name))
        print(json.dumps(rows[-1]), file=sys.stderr)
    text = markdown(rows, args.amount, load)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
