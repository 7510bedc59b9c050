"""Real torchvision and timm networks through edgepipe, side by side with Google's litert-torch.

Usage: python benchmarks/real_models.py [--models a,b,...] [--int8-models a,b,...] [--work DIR]
                                        [--litert-venv DIR] [--no-litert] [--json FILE] [--markdown FILE]

Needs the model libraries (`make real-models`). litert-torch pins its own ai-edge-litert and
numpy, so it lives in its own venv (created on first use with pip, default .venv-litert-torch)
and converts in a child process. Per model it prints: the whole `edgepipe export` process's wall
time and peak memory (timed), the fp32 file's size and op count, its ledger figures against PyTorch, and
the same for litert-torch; then both files' median latency on one thread, measured interleaved
in this one process (profilers.paired), and the ratios. Both stacks are imported once, untimed,
before the first export, so neither pays for a cold disk cache. For --int8-models it also exports
int8 calibrated on a seeded .npz, from the factory and from edgepipe's own .onnx file, and prints
their ledgers. Last, issue 32's targets over every pair: export time at most 1.5x litert-torch's
(median at most 1.0x), memory at most 2.0x and never over 3 GiB. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from edgepipe.exporters.tflite.inspect import file_composition, op_histogram  # noqa: E402
from edgepipe.models.shared.memory import descendants, process_memory  # noqa: E402
from edgepipe.models.shared.specs import convert_layout  # noqa: E402
from edgepipe.profilers.paired import paired_ratio  # noqa: E402

LITERT_TORCH = "litert-torch==0.10.0"


def timed(
    cmd: list[str], out_path: Path, env: dict | None = None, cwd: Path | None = None, timeout: float | None = None
) -> dict:
    """Run a child to completion: wall seconds, two peaks of memory (MiB), exit code; stdout in out_path.

    Both peaks cover the child and every process it starts (edgepipe converts in a second process),
    polled from /proc every 0.05 s:
    - peak_sum_mb, the issue's measure: the largest sum of VmRSS over the process tree at one poll;
    - peak_rss_mb: the sum of each process's VmHWM, an upper bound of their joint peak (their own
      peaks need not fall at the same moment).
    wait4's ru_maxrss would include this (large) process's RSS at fork, which Linux carries across exec.
    A child still running after `timeout` seconds is killed with its whole process group.
    """
    with open(out_path, "wb") as out, open(out_path.with_suffix(".err"), "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True)
        peaks: dict[int, float] = {}
        peak_sum = 0.0
        while proc.poll() is None:
            memory = {pid: m for pid in [proc.pid, *descendants(proc.pid)] if (m := process_memory(pid))}
            peak_sum = max(peak_sum, sum(rss for rss, _ in memory.values()))
            for pid, (_, hwm) in memory.items():
                peaks[pid] = max(peaks.get(pid, 0.0), hwm)
            if timeout is not None and time.perf_counter() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                err.write(f"\nkilled after {timeout:.0f} s\n".encode())
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_sum_mb": peak_sum,
        "peak_rss_mb": sum(peaks.values()),
        "rc": proc.returncode,
    }


def edgepipe_export(name: str, work: Path, timeout: float | None = None) -> dict:
    """`edgepipe export real_model_zoo:NAME --variant fp32 --json` as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    run = timed(
        [
            str(ROOT / ".venv/bin/edgepipe"),
            "export",
            f"real_model_zoo:{name}",
            "--variant",
            "fp32",
            "-o",
            str(work / "edgepipe"),
            "--json",
        ],
        work / "edgepipe.json",
        env=env,
        cwd=work,
        timeout=timeout,
    )
    if run["rc"] != 0:
        return {**run, "error": _last_line(work / "edgepipe.err")}
    summary = json.loads((work / "edgepipe.json").read_text())
    art = next(a for a in summary["artifacts"] if a["format"] == "tflite" and a["variant"] == "fp32")
    return {**run, "path": art["path"], "inputs": art["inputs"], "ledger": art["ledger"]}


def warm_up(litert_python: Path | None) -> None:
    """Import each converter's stack once, so the first timed export does not read it from a cold disk."""
    subprocess.run([str(ROOT / ".venv/bin/python"), "-c", "import torch, tensorflow, onnx2tf, onnxruntime"], check=True)
    if litert_python is not None:
        subprocess.run([str(litert_python), "-c", "import torch, litert_torch"], check=True)


def int8_exports(name: str, work: Path, onnx_file: Path) -> dict:
    """`edgepipe export ... --variant int8 --calibration calib.npz` from the factory and from the .onnx file."""
    import real_model_zoo

    samples = np.random.default_rng(1).standard_normal((64, *real_model_zoo.input_shape(name)[1:])).astype(np.float32)
    np.savez(work / "calib.npz", x=samples)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    found = {}
    for source, model in (("factory", f"real_model_zoo:{name}"), ("onnx", str(onnx_file))):
        out = work / f"int8_{source}"
        cmd = [str(ROOT / ".venv/bin/edgepipe"), "export", model, "--variant", "int8", "--calibration"]
        run = timed([*cmd, str(work / "calib.npz"), "-o", str(out), "--json"], work / f"int8_{source}.json", env, work)
        if run["rc"] != 0:
            found[source] = {**run, "error": _last_line(work / f"int8_{source}.err")}
            continue
        summary = json.loads((work / f"int8_{source}.json").read_text())
        art = next(a for a in summary["artifacts"] if a["format"] == "tflite")
        found[source] = {**run, "input_dtype": art["inputs"][0]["dtype"], "ledger": art["ledger"]}
    return found


def int8_markdown(rows: list[dict]) -> str:
    """The int8 exports as one Markdown table."""
    lines = [
        "| model | source | export s | input dtype | SQNR dB vs reference | cosine | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for source, e in r.get("int8", {}).items():
            if "error" in e:
                lines.append(f"| {r['model']} | {source} | failed: {e['error'][:120]} | | | | |")
                continue
            led = e["ledger"]
            lines.append(
                f"| {r['model']} | {source} ({led['reference']}) | {e['seconds']:.0f} | {e['input_dtype']} | "
                f"{led['sqnr_db']:.1f} | {led['cosine']:.6f} | {led['ok']} |"
            )
    return "\n".join(lines)


def litert_export(name: str, work: Path, python: Path, timeout: float | None = None) -> dict:
    """litert-torch's conversion of the same model, seeded the same way, in its own venv."""
    out = work / f"{name}_litert.tflite"
    cmd = [str(python), str(ROOT / "benchmarks/litert_torch_child.py"), name, str(out)]
    run = timed(cmd, work / "litert.json", cwd=work, timeout=timeout)
    if run["rc"] != 0:
        return {**run, "error": _last_line(work / "litert.err")}
    return {**run, "path": str(out)}


def ensure_litert_venv(venv: Path) -> Path:
    """The litert-torch venv's python, created with pip on first use."""
    python = venv / "bin/python"
    if not (venv / ".ready").exists():
        print(f"creating {venv} with {LITERT_TORCH} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", LITERT_TORCH], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "-r",
                str(ROOT / "benchmarks/requirements-real-models.txt"),
            ],
            check=True,
        )
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pyyaml"], check=True)
        (venv / ".ready").touch()
    return python


def compare_files(ours: dict, theirs: dict | None, latency: bool = True) -> dict:
    """Sizes, op counts, outputs on one seeded image, and (with latency) median latencies measured interleaved."""
    from ai_edge_litert.interpreter import Interpreter

    spec = ours["inputs"][0]
    shape = tuple(spec["shape"][spec["layout"].index(axis)] for axis in "NCHW")  # the model's own size
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feeds_ours = {spec["name"]: np.ascontiguousarray(convert_layout(image, "NCHW", spec["layout"]))}
    row = {
        "size": Path(ours["path"]).stat().st_size,
        "ops": sum(op_histogram(Path(ours["path"])).values()),
        "size_split": file_composition(Path(ours["path"])).to_dict(),
    }
    if theirs is None or "path" not in theirs:
        return row
    runner = Interpreter(model_path=theirs["path"]).get_signature_runner()
    name, detail = next(iter(runner.get_input_details().items()))
    feeds_theirs = {name: image if tuple(detail["shape"]) == image.shape else np.transpose(image, (0, 2, 3, 1))}
    got_theirs = np.asarray(next(iter(runner(**feeds_theirs).values())), np.float64).ravel()
    got_ours = Interpreter(model_path=ours["path"]).get_signature_runner()(**feeds_ours)
    got_ours = np.asarray(next(iter(got_ours.values())), np.float64)
    if got_ours.ndim == 4 and got_ours.size == got_theirs.size and spec["layout"] == "NHWC":
        got_ours = np.transpose(got_ours, (0, 3, 1, 2))  # a segmentation map written channels-last
    got_ours = got_ours.ravel()
    row = {
        **row,
        "litert_size": Path(theirs["path"]).stat().st_size,
        "litert_ops": sum(op_histogram(Path(theirs["path"])).values()),
        "outputs_cosine": float(got_ours @ got_theirs / np.sqrt((got_ours @ got_ours) * (got_theirs @ got_theirs))),
    }
    if not latency:
        return row
    pair = paired_ratio(
        ("tflite", Path(ours["path"]), feeds_ours),
        ("tflite", Path(theirs["path"]), feeds_theirs),
        threads=1,
        blocks=20,
        block_seconds=0.15,
        warmup_seconds=0.5,
    )
    return {
        **row,
        "p50_ms": pair.target_p50_ms,
        "litert_p50_ms": pair.reference_p50_ms,
        "latency_ratio": pair.p50_ratio,
        "latency_ratio_ci95": list(pair.p50_ratio_ci95),
    }


def markdown(rows: list[dict]) -> str:
    """The results as one Markdown table (ratios are edgepipe / litert-torch)."""
    head = (
        "| model | export s (edgepipe / litert-torch) | time ratio | peak MiB, sampled sum (e / l) | memory ratio | "
        "sum of VmHWM MiB (e / l) | size MB (e / l) | "
        "size ratio | ops (e / l) | p50 ms (e / l) | latency ratio [95 % CI] | cosine vs torch | max abs | ok |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        e, lt, c = r["edgepipe"], r.get("litert") or {}, r.get("files", {})
        if "error" in e:
            lines.append(f"| {r['model']} | failed: {e['error'][:120]} |" + " |" * 12)
            continue
        led = e["ledger"]
        lt_s = f"{lt['seconds']:.0f}" if "path" in lt else ("failed" if lt else "-")
        ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
        ci = c.get("latency_ratio_ci95")
        lt_sum = lt.get("peak_sum_mb") if "path" in lt else None
        lines.append(
            f"| {r['model']} | {e['seconds']:.0f} / {lt_s} | "
            f"{ratio(e['seconds'], lt.get('seconds') if 'path' in lt else None)} | "
            f"{e['peak_sum_mb']:.0f} / {lt.get('peak_sum_mb', 0):.0f} | {ratio(e['peak_sum_mb'], lt_sum)} | "
            f"{e['peak_rss_mb']:.0f} / {lt.get('peak_rss_mb', 0):.0f} | {c['size'] / 1e6:.2f} / "
            f"{c.get('litert_size', 0) / 1e6:.2f} | {ratio(c['size'], c.get('litert_size'))} | "
            f"{c['ops']} / {c.get('litert_ops', '-')} | "
            f"{c.get('p50_ms', 0):.2f} / {c.get('litert_p50_ms', 0):.2f} | "
            f"{(str(round(c['latency_ratio'], 2)) + 'x [' + f'{ci[0]:.2f}, {ci[1]:.2f}' + ']') if ci else '-'} | "
            f"{led['cosine']:.6f} | {led['max_abs']:.2e} | {led['ok']} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Issue 32's targets over the pairs both converted: time and memory ratios, and what misses them."""
    pairs = [r for r in rows if "error" not in r["edgepipe"] and "path" in (r.get("litert") or {})]
    if not pairs:
        return "no model converted with both"
    lines = []
    for key, what, limit in (("seconds", "export time", 1.5), ("peak_sum_mb", "peak memory (sampled sum)", 2.0)):
        ratios = {r["model"]: r["edgepipe"][key] / r["litert"][key] for r in pairs}
        over = ", ".join(f"{m} {x:.2f}x" for m, x in sorted(ratios.items(), key=lambda kv: -kv[1]) if x > limit)
        lines.append(
            f"{what}: median {statistics.median(ratios.values()):.2f}x over {len(ratios)} pairs "
            f"(range {min(ratios.values()):.2f}x-{max(ratios.values()):.2f}x); over {limit}x: {over or 'none'}"
        )
    big = [
        f"{r['model']} {r['edgepipe']['peak_sum_mb']:.0f} MiB"
        for r in rows
        if r["edgepipe"].get("peak_sum_mb", 0) > 3072
    ]
    lines.append(f"edgepipe exports over 3 GiB: {', '.join(big) or 'none'}")
    return "\n".join(lines)


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def main() -> None:
    import real_model_zoo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(real_model_zoo.MODELS))
    parser.add_argument("--int8-models", default="resnet18")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--litert-venv", type=Path, default=ROOT / ".venv-litert-torch")
    parser.add_argument("--no-litert", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="real-models-"))
    python = None if args.no_litert else ensure_litert_venv(args.litert_venv)
    warm_up(python)
    int8_models = set(filter(None, args.int8_models.split(",")))
    rows = []
    for name in args.models.split(","):
        where = work / name
        where.mkdir(parents=True, exist_ok=True)
        row = {"model": name, "edgepipe": edgepipe_export(name, where)}
        if python is not None:
            row["litert"] = litert_export(name, where, python)
        if "error" not in row["edgepipe"]:
            row["files"] = compare_files(row["edgepipe"], row.get("litert"))
            if name in int8_models:
                row["int8"] = int8_exports(name, where, Path(row["edgepipe"]["path"]).parent / "model.onnx")
        rows.append(row)
        print(markdown([row]).splitlines()[-1], file=sys.stderr, flush=True)
        if args.json:  # after every model: a long run cut short keeps what it measured
            args.json.write_text(json.dumps(rows, indent=1))
        if args.markdown:
            args.markdown.write_text(markdown(rows) + "\n\n" + int8_markdown(rows) + "\n")
    print(markdown(rows))
    print("\n" + int8_markdown(rows))
    print("\n" + summary(rows))
    load = os.getloadavg()
    print(
        f"\nload average while measured (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
        f"{os.cpu_count()} cores; work dir {work}"
    )


if __name__ == "__main__":
    main()
