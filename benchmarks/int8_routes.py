"""edgepipe's int8 files beside Google's two int8 routes: size, latency, SQNR and top-1, in one run.

Usage: python benchmarks/int8_routes.py [--work DIR] [--models mobilevit_xxs,resnet18] [--epochs N]
                                        [--litert-venv DIR] [--markdown FILE]

Needs the model libraries (`make real-models`) and litert-torch's venv (made on first use). Per model:
- the random-weight real_model_zoo models at 224x224 (weights saved once, so every route converts the
  same ones), calibrated on 64 seeded standard-normal samples; and the user's mobilenet_v2 trained on
  digits at 3x32x32 (benchmarks/user_mobilenet.py, as prune_recovery.py trains it), calibrated on its
  first 200 training samples;
- edgepipe: `edgepipe export` with fp32, dynamic, int8, int8_float_io and int8_fast (timed on this host);
- Google: ai-edge-quantizer static int8 on litert-torch's file and litert-torch's PT2E int8, calibrated
  on the same samples (benchmarks/google_int8.py, in litert-torch's venv);
- every file's size; its latency over edgepipe's fp32 file, interleaved in one process on one thread
  (LiteRT with XNNPACK, profilers.paired); its SQNR against PyTorch on 32 held-out inputs (seeded
  normal, or the digits eval set); top-1 on the eval set for the trained model;
- edgepipe's fastest int8-weight file at 20 dB or more against Google's fastest, timed interleaved.
Measure on a quiet machine: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
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

from prune_recovery import google_int8, interleaved, tflite_outputs, user_side  # noqa: E402
from real_models import ensure_litert_venv  # noqa: E402

EDGEPIPE_VARIANTS = ("fp32", "dynamic", "int8", "int8_float_io", "int8_fast")
INT8_WEIGHTS = ("dynamic", "int8", "int8_float_io", "int8_fast")  # every edgepipe file whose weights are int8
SQNR_FLOOR_DB = 20.0
HELD_OUT = 32


def zoo_side(work: Path, name: str) -> dict:
    """A zoo model's weights, calibration and held-out inputs, and PyTorch's outputs on them."""
    import real_model_zoo

    torch.manual_seed(0)
    module, example = real_model_zoo.factory(name)()
    torch.save(module.state_dict(), work / f"{name}.pt")
    rng = np.random.default_rng(0)
    shape = tuple(example.shape[1:])
    np.savez(work / f"{name}_cal.npz", x=rng.standard_normal((64, *shape)).astype(np.float32))
    x = rng.standard_normal((HELD_OUT, *shape)).astype(np.float32)
    return {"module": module, "x": x, "y": None, "factory": f"real_model_zoo:{name}", "weights": f"{name}.pt"}


def trained_side(work: Path, epochs: int) -> dict:
    """The user's mobilenet_v2 trained on digits, its data files and held-out set."""
    from user_mobilenet import digits_32

    user = user_side(work, epochs)
    (x_train, _), (x_eval, y_eval) = digits_32()
    np.savez(work / "user_cal.npz", x=x_train[:200])
    return {
        "module": user["module"],
        "x": x_eval,
        "y": y_eval,
        "factory": "user_mobilenet:build",
        "weights": "user.pt",
        "top1_torch": user["top1"],
        "export": ["--eval-data", "eval.npz"],  # validated on the held-out digits, as the user would
    }


def edgepipe_export(work: Path, name: str, side: dict, calibration: str) -> dict:
    """`edgepipe export` as a user runs it; {variant: file} and the export's wall seconds."""
    out = work / f"edgepipe-{name}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    command = [
        sys.executable, "-m", "edgepipe.pipeline", "export", side["factory"], "--weights", side["weights"],
        "--calibration", calibration, "--variant", ",".join(EDGEPIPE_VARIANTS), "-o", str(out), "--json",
        *side.get("export", []),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"edgepipe export {name} failed: {run.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(run.stdout)
    files = {a["variant"]: str(out / a["path"]) for a in summary["artifacts"] if a["format"] == "tflite"}
    manifest = json.loads((out / "manifest.json").read_text())
    return {"files": files, "fast_choice": _fast_choice(manifest)}


def _fast_choice(manifest: dict) -> dict | None:
    for artifact in manifest["stages"]["export"]["result"]["artifacts"]:
        if artifact.get("fast_choice"):
            return artifact["fast_choice"]
    return None


def sqnr_db(reference: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((reference - got) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference**2) / noise))


def measure(name: str, side: dict, files: dict[str, str]) -> dict:
    """Size, latency over edgepipe's fp32 file, SQNR against PyTorch and top-1 of every file."""
    with torch.no_grad():
        reference = side["module"].eval()(torch.from_numpy(side["x"])).numpy().astype(np.float64)
    rows = {}
    for route, path in files.items():
        outputs = tflite_outputs(path, side["x"])
        rows[route] = {
            "size": Path(path).stat().st_size,
            "sqnr_db": sqnr_db(reference, outputs),
            "top1": float((outputs.argmax(1) == side["y"]).mean()) if side["y"] is not None else None,
            "vs_fp32": interleaved(path, files["edgepipe fp32"], side["x"]),
        }
        print(f"{name} {route}: {rows[route]}", file=sys.stderr)
    return rows


def head_to_head(rows: dict, files: dict[str, str], x: np.ndarray) -> dict | None:
    """edgepipe's fastest int8-weight file at the floor against Google's fastest file, timed interleaved."""
    ours = [r for r in rows if r.split()[-1] in INT8_WEIGHTS and r.startswith("edgepipe") and _kept(rows[r])]
    theirs = [r for r in rows if not r.startswith("edgepipe")]
    if not ours or not theirs:
        return None
    best = min(ours, key=lambda r: rows[r]["vs_fp32"]["p50_ratio"])
    rival = min(theirs, key=lambda r: rows[r]["vs_fp32"]["p50_ratio"])
    return {"edgepipe": best, "google": rival, **interleaved(files[best], files[rival], x)}


def _kept(row: dict) -> bool:
    return row["sqnr_db"] >= SQNR_FLOOR_DB


def markdown(results: dict, load: str) -> str:
    lines = [
        f"Load average at the start: {load}. Latency: p50 over edgepipe's fp32 file, interleaved, one thread "
        "(95 % CI over blocks); SQNR against PyTorch on 32 held-out inputs.",
        "",
    ]
    for name, result in results.items():
        lines += [f"### {name}", "", "| route | size (bytes) | latency vs edgepipe fp32 | SQNR (dB) | top-1 |"]
        lines += ["|---|---|---|---|---|"]
        for route, row in result["rows"].items():
            low, high = row["vs_fp32"]["p50_ratio_ci95"]
            top1 = f"{row['top1']:.2%}" if row["top1"] is not None else "-"
            lines.append(
                f"| {route} | {row['size']:,} | {row['vs_fp32']['p50_ratio']:.2f}x [{low:.2f}, {high:.2f}] "
                f"| {row['sqnr_db']:.1f} | {top1} |"
            )
        for route, why in result["errors"].items():
            lines.append(f"| {route} | failed: {why} | | | |")
        duel = result["head_to_head"]
        if duel:
            low, high = duel["p50_ratio_ci95"]
            ratio = f"{duel['p50_ratio']:.2f}x [{low:.2f}, {high:.2f}]"
            lines += ["", f"{duel['edgepipe']} against {duel['google']}, interleaved: {ratio}"]
        fast = result["fast_choice"]
        if fast:
            lines += [
                "",
                f"int8_fast kept {', '.join(fast['float_ops']) or 'no op type'} in float32; the all-int8 file "
                f"ran {fast['all_int8_vs_fp32']:.2f}x the fp32 file on this host, int8_fast {fast['vs_fp32']:.2f}x.",
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--models", default="mobilevit_xxs,resnet18")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the user's mobilenet_v2")
    parser.add_argument("--litert-venv", type=Path, default=ROOT / ".venv-litert-torch")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="int8-routes-"))
    work.mkdir(parents=True, exist_ok=True)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    python = ensure_litert_venv(args.litert_venv)
    sides = {name: zoo_side(work, name) for name in args.models.split(",") if name}
    sides["mobilenet_v2 trained on digits 32x32"] = trained_side(work, args.epochs)
    results = {}
    for name, side in sides.items():
        trained = side["y"] is not None
        calibration = f"{Path(side['weights']).stem}_cal.npz"
        ours = edgepipe_export(work, Path(side["weights"]).stem, side, calibration)
        model = "user.pt" if trained else side["factory"].split(":")[1]
        google = google_int8(work, python, model, calibration, *([] if trained else [side["weights"]]))
        files = {f"edgepipe {v}": path for v, path in ours["files"].items()}
        files.update(google.get("files", {}))
        rows = measure(name, side, files)
        results[name] = {
            "rows": rows,
            "errors": google.get("errors", {}) | ({"Google's routes": google["error"]} if "error" in google else {}),
            "head_to_head": head_to_head(rows, files, side["x"]),
            "fast_choice": ours["fast_choice"],
        }
    text = markdown(results, load)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
