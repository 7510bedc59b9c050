"""A user's trained mobilenet_v2 through edgepipe's whole chain, beside plain Torch-Pruning and Google's int8.

Usage: python benchmarks/prune_recovery.py [--work DIR] [--epochs N] [--finetune-epochs N] [--amount A]
                                           [--litert-venv DIR] [--no-litert] [--markdown FILE]

Needs the model libraries (`make real-models`). In one run, on one thread:
1. the user's side: digits upsampled to 3x32x32 (train.npz / eval.npz, a seeded 75/25 split), and
   mobilenet_v2 trained on them with a plain loop (user.pt);
2. `edgepipe run` as a user runs it: the factory with weights = user.pt, [train] data = train.npz,
   [validate] eval_data = eval.npz, [compress] prune = "channels" at --amount, fp32 and int8. Its whole
   wall time; top-1 of every file on eval.npz; sizes against the uncompressed fp32 file that the run
   also writes; the pruned fp32 file's latency timed interleaved with the uncompressed one;
3. plain Torch-Pruning (L2 magnitude, the same amount, so the same MACs) followed by plain fine-tuning
   for the same epochs at the same learning rate, as Torch-Pruning's README does it;
4. Google's int8 routes on the same trained weights, in litert-torch's own venv (benchmarks/google_int8.py):
   ai-edge-quantizer static int8 on litert-torch's file, and litert-torch's PT2E int8; their top-1 on
   eval.npz and latency interleaved with edgepipe's int8 file of the uncompressed model.
Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from real_models import ensure_litert_venv, timed  # noqa: E402
from user_mobilenet import build, digits_32, top1, train  # noqa: E402

from edgepipe.profilers.paired import paired_ratio  # noqa: E402

LR = 3e-3


def job_text(amount: float, finetune_epochs: int, seed: int) -> str:
    """The user's job file."""
    return f"""
[job]
name = "user_mobilenet"
model = "user_mobilenet:build"
weights = "user.pt"
seed = {seed}

[train]
data = "train.npz"
lr = {LR}
batch_size = 32
lr_schedule = "cosine"

[compress]
prune = "channels"
prune_amount = {amount}
finetune_epochs = {finetune_epochs}
recovery = "both"

[export]
variants = ["fp32", "int8"]

[validate]
eval_data = "eval.npz"

[profile]
runtimes = ["tflite"]
op_profile = false
throughput_batches = []
"""


def user_side(work: Path, epochs: int) -> dict:
    """The user's data files and trained weights (trained once per work folder)."""
    (x_train, y_train), (x_eval, y_eval) = digits_32()
    np.savez(work / "train.npz", x=x_train, labels=y_train)
    np.savez(work / "eval.npz", x=x_eval, labels=y_eval)
    torch.manual_seed(0)
    module = build()[0]
    seconds = None
    if (work / "user.pt").is_file():
        module.load_state_dict(torch.load(work / "user.pt", weights_only=True))
    else:
        seconds = train(module, x_train, y_train, epochs, LR)
        torch.save(module.state_dict(), work / "user.pt")
    return {"top1": top1(module, x_eval, y_eval), "train_seconds": seconds, "module": module}


def edgepipe_run(work: Path, amount: float, finetune_epochs: int, seed: int) -> dict:
    """`edgepipe run job.toml` from the user's folder, timed as a whole process (run directory run_<seed>)."""
    (work / "job.toml").write_text(job_text(amount, finetune_epochs, seed))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    out = work / f"run_{seed}"
    cmd = [str(ROOT / ".venv/bin/edgepipe"), "run", "job.toml", "-o", out.name, "--json"]
    run = timed(cmd, work / "edgepipe.json", env=env, cwd=work)
    errors = [line for line in (work / "edgepipe.err").read_text().splitlines() if "error:" in line]
    if run["rc"] not in (0, 1) or not (out / "ledger.json").is_file():
        raise SystemExit(f"edgepipe run failed: {(work / 'edgepipe.err').read_text()[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {name: s["result"] for name, s in manifest["stages"].items()}
    # a failed check (exit 1) is a finding: the ledger is complete, the stages after validate did not run
    ledger = json.loads((out / "ledger.json").read_text())
    sizes = {a["path"]: a["size_bytes"] for a in manifest["artifacts"]}
    profiles = stages["profile"]["results"] if "profile" in stages else []
    vs = next((r["vs_uncompressed"] for r in profiles if r["variant"] == "fp32"), None)
    if vs is None:  # the run stopped at a failed check: time the two fp32 files here
        fp32, before = out / "model_fp32.tflite", out / "uncompressed/model_fp32.tflite"
        vs = interleaved(str(fp32), str(before), digits_32()[1][0])
    return {
        **run,
        "trained": stages["compress"]["trained"],
        "cut": stages["compress"]["steps"][0]["pruned"]["metrics"]["accuracy"],
        "compressed": stages["compress"]["compressed"],
        "top1": {k: v["accuracy"] for k, v in ledger["metrics"].items()},
        "check": errors[0] if run["rc"] else "passed",
        "sizes": sizes,
        "fp32_vs_uncompressed": vs,
        "uncompressed_int8": str(out / "uncompressed/model_int8.tflite"),
        "int8": str(out / "model_int8.tflite"),
    }


def plain_torch_pruning(trained: torch.nn.Module, amount: float, epochs: int, seed: int) -> dict:
    """L2-magnitude Torch-Pruning at `amount` (classifier kept), then plain fine-tuning, last epoch kept."""
    import torch_pruning as tp

    (x_train, y_train), (x_eval, y_eval) = digits_32()
    module = copy.deepcopy(trained).eval()
    example = torch.zeros(1, 3, 32, 32)
    macs_before, _ = tp.utils.count_ops_and_params(module, example)
    pruner = tp.pruner.MetaPruner(
        module,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=amount,
        ignored_layers=[module.classifier[1]],
    )
    pruner.step()
    macs, params = tp.utils.count_ops_and_params(module, example)
    cut = top1(module, x_eval, y_eval)
    train(module, x_train, y_train, epochs, LR, seed)
    return {
        "macs": int(macs),
        "macs_ratio": macs / macs_before,
        "params": int(params),
        "cut": cut,
        "top1": top1(module, x_eval, y_eval),
    }


def google_int8(work: Path, python: Path, model: str = "user.pt", data: str = "train.npz", *weights: str) -> dict:
    """Google's two int8 routes on the user's weights (or a zoo model's, given weights), in litert-torch's venv,
    calibrated on data; each file's path or error."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    run = subprocess.run(
        [str(python), str(ROOT / "benchmarks/google_int8.py"), model, data, f"google-{Path(model).stem}", *weights],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"}
    return json.loads(run.stdout.strip().splitlines()[-1])


def tflite_feed(batch: np.ndarray, detail: dict) -> np.ndarray:
    """NCHW float samples in the layout and dtype a TFLite input declares (int8 by its scale and zero point)."""
    feed = batch if detail["shape"][1] == batch.shape[1] else batch.transpose(0, 2, 3, 1)
    if detail["dtype"] != np.float32:
        scale, zero = detail["quantization"]
        feed = np.clip(np.round(feed / scale + zero), -128, 127).astype(detail["dtype"])
    return np.ascontiguousarray(feed)


def tflite_outputs(path: str, x: np.ndarray) -> np.ndarray:
    """The file's first output on each NCHW sample, read back as float (dequantized when it is int8)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for sample in x:
        interpreter.set_tensor(inp["index"], tflite_feed(sample[None], inp))
        interpreter.invoke()
        value = interpreter.get_tensor(out["index"]).astype(np.float64)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            value = (value - zero) * scale
        outputs.append(value.reshape(-1))
    return np.stack(outputs)


def tflite_top1(path: str, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of a TFLite file on NCHW float samples."""
    return float((tflite_outputs(path, x).argmax(1) == y).mean())


def interleaved(target: str, reference: str, x: np.ndarray) -> dict:
    """target / reference p50 latency, timed interleaved in this process on one thread."""
    sides = []
    for path in (target, reference):
        from ai_edge_litert.interpreter import Interpreter

        # fed by the signature's input name, as the timing harness binds inputs
        name, inp = next(iter(Interpreter(model_path=path).get_signature_runner().get_input_details().items()))
        sides.append(("tflite", Path(path), {name: tflite_feed(x[:1], inp)}))
    ratio = paired_ratio(sides[0], sides[1], threads=1)
    return {"p50_ratio": ratio.p50_ratio, "p50_ratio_ci95": ratio.p50_ratio_ci95}


def markdown(user: dict, runs: list[dict], plains: list[dict], google: dict, args, load: str) -> str:
    """The tables for docs/compression.md; the files and timings are the first seed's run."""
    ours, amount, epochs = runs[0], args.amount, args.finetune_epochs
    sizes, t = ours["sizes"], ours["top1"]
    fp32_before = sizes["uncompressed/model_fp32.tflite"]
    vs = ours["fp32_vs_uncompressed"]
    lines = [
        f"Trained mobilenet_v2 (the user's loop): top-1 {user['top1']:.2%} on eval.npz. `edgepipe run` took "
        f"{ours['seconds']:.0f} s in all (peak RSS {ours['peak_rss_mb']:.0f} MiB), load average {load}; "
        f"its own checks: {ours['check']}.",
        "",
        f"### Pruning {amount:.0%} of the channels, {epochs} recovery epochs, seeds 0-{len(runs) - 1}",
        "",
        "| route | MACs (x trained) | top-1 right after the cut | top-1 after recovery, per seed | mean |",
        "|---|---|---|---|---|",
        f"| plain Torch-Pruning (L2) + fine-tune (the user's loop, last epoch) | {plains[0]['macs_ratio']:.2f}x | "
        f"{plains[0]['cut']:.2%} | {_each([p['top1'] for p in plains])} |",
        f"| edgepipe (Taylor on the user's data, BatchNorm re-estimated, distillation + labels, best epoch) | "
        f"{ours['compressed']['macs'] / ours['trained']['macs']:.2f}x | {ours['cut']:.2%} | "
        f"{_each([r['top1']['torch'] for r in runs])} |",
        f"| edgepipe's int8 file of the same | | | {_each([r['top1']['tflite:int8'] for r in runs])} |",
    ]
    lines += [
        "",
        "### The pruned model's files",
        "",
        "| file | size (x uncompressed fp32) | top-1 | host p50 (x uncompressed fp32, interleaved) |",
        "|---|---|---|---|",
        f"| uncompressed fp32 | {fp32_before:,} B (1.00x) | {user['top1']:.2%} | 1.00x |",
        f"| pruned fp32 | {sizes['model_fp32.tflite']:,} B ({sizes['model_fp32.tflite'] / fp32_before:.2f}x) | "
        f"{t['tflite:fp32']:.2%} | {_ratio(vs['p50_ratio'], vs['p50_ratio_ci95'])} |",
        f"| pruned int8 | {sizes['model_int8.tflite']:,} B ({sizes['model_int8.tflite'] / fp32_before:.2f}x) | "
        f"{t['tflite:int8']:.2%} | |",
        "",
    ]
    if google:
        lines += [
            "### int8 of the uncompressed model: edgepipe against Google's routes",
            "",
            "| route | size | top-1 | host p50 (x edgepipe int8, interleaved) |",
            "|---|---|---|---|",
        ]
        for name, row in google.items():
            if "error" in row:
                lines.append(f"| {name} | failed: {row['error'][:100]} | | |")
            else:
                lines.append(
                    f"| {name} | {row['size']:,} B | {row['top1']:.2%} | "
                    f"{_ratio(row['latency']['p50_ratio'], row['latency']['p50_ratio_ci95'])} |"
                )
    return "\n".join(lines) + "\n"


def _each(values: list[float]) -> str:
    return f"{', '.join(f'{v:.2%}' for v in values)} | {sum(values) / len(values):.2%}"


def _ratio(value: float, ci: tuple[float, float]) -> str:
    return f"{value:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=15)
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=3, help="recovery runs per route (the job's / loop's seed)")
    parser.add_argument("--litert-venv", type=Path, default=ROOT / ".venv-litert-torch")
    parser.add_argument("--no-litert", action="store_true")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="prune-recovery-"))
    work.mkdir(parents=True, exist_ok=True)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    user = user_side(work, args.epochs)
    print(f"user's mobilenet_v2: top-1 {user['top1']:.4f}", file=sys.stderr)
    runs, plains = [], []
    for seed in range(args.seeds):
        runs.append(edgepipe_run(work, args.amount, args.finetune_epochs, seed))
        print(f"edgepipe run, seed {seed}: {runs[-1]['seconds']:.0f} s, top-1 {runs[-1]['top1']}", file=sys.stderr)
        plains.append(plain_torch_pruning(user["module"], args.amount, args.finetune_epochs, seed))
        print(f"plain Torch-Pruning + fine-tune, seed {seed}: {plains[-1]}", file=sys.stderr)
    ours = runs[0]
    google = {}
    if not args.no_litert:
        _, (x_eval, y_eval) = digits_32()
        found = google_int8(work, ensure_litert_venv(args.litert_venv))
        routes = {"edgepipe int8": ours["uncompressed_int8"], **found.get("files", {})}
        if "error" in found:
            google["Google's routes"] = {"error": found["error"]}
        for name, path in routes.items():
            google[name] = {
                "size": Path(path).stat().st_size,
                "top1": tflite_top1(path, x_eval, y_eval),
                "latency": interleaved(path, ours["uncompressed_int8"], x_eval),
            }
        google.update({name: {"error": why} for name, why in found.get("errors", {}).items()})
    text = markdown(user, runs, plains, google, args, load)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
