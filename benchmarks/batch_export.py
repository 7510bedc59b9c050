"""`edgepipe batch` against a shell loop of the onnx2tf command, on the same ONNX models, in one run.

Usage: python benchmarks/batch_export.py [WORK_DIR]   (a temporary directory when omitted)

Every model becomes a TFLite fp32 file three ways, each timed wall-clock:
(1) `bash -c 'for f in models/*.onnx; do onnx2tf -i "$f" -o out/NAME ...; done'`, one process per model,
(2) `edgepipe batch --workers 2` into a fresh directory (cold cache),
(3) the same batch again on the same directory (every job answered from the cache).
The models: BACKEND_MODELS from the onnx package's backend test data plus exported zoo models,
copied into WORK/models/. Setup (zoo export, copying) is not timed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import onnx

DATA_ROOT = Path(onnx.__file__).parent / "backend" / "test" / "data"
# Measured to pass edgepipe's export + validation with the seeded random inputs it makes for an
# ONNX file (no inputs file) and none has only 4-D, 3-channel inputs (see onnx2tf_would_download).
# test_Embedding* are left out: random indices 0..9 overrun their 4-row tables in ONNX Runtime.
BACKEND_MODELS = (
    "pytorch-converted/test_AvgPool1d",
    "pytorch-converted/test_BatchNorm1d_3d_input_eval",
    "pytorch-converted/test_BatchNorm3d_eval",
    "pytorch-converted/test_Conv1d",
    "pytorch-converted/test_Conv1d_dilated",
    "pytorch-converted/test_Conv1d_groups",
    "pytorch-converted/test_Conv1d_stride",
    "pytorch-converted/test_Conv2d_depthwise",
    "pytorch-converted/test_Conv2d_depthwise_strided",
    "pytorch-converted/test_Conv2d_groups",
    "pytorch-converted/test_Conv3d",
    "pytorch-converted/test_Conv3d_stride_padding",
    "pytorch-converted/test_ELU",
    "pytorch-converted/test_GLU_dim",
    "pytorch-converted/test_LeakyReLU_with_negval",
    "pytorch-converted/test_Linear",
    "pytorch-converted/test_LogSoftmax",
    "pytorch-converted/test_MaxPool1d_stride",
    "pytorch-converted/test_PixelShuffle",
    "pytorch-converted/test_PoissonNLLLLoss_no_reduce",
    "pytorch-converted/test_SELU",
    "pytorch-converted/test_Softmax",
    "pytorch-operator/test_operator_addmm",
    "pytorch-operator/test_operator_basic",
    "pytorch-operator/test_operator_chunk",
    "pytorch-operator/test_operator_clip",
    "pytorch-operator/test_operator_concat2",
    "pytorch-operator/test_operator_conv",
    "pytorch-operator/test_operator_maxpool",
    "pytorch-operator/test_operator_mm",
    "pytorch-operator/test_operator_pad",
    "pytorch-operator/test_operator_reduced_mean_keepdim",
)
ZOO_MODELS = ("cnn_digits", "mlp_tabular")
# -osd: a SignatureDef, so the file can be fed by input name (edgepipe's files have one);
# -coion: the ONNX input/output names kept, as edgepipe keeps them; -n: a script wants no per-op log.
LOOP_FLAGS = "-osd -coion -n"
LOOP = f"""
mkdir -p out logs
for f in models/*.onnx; do
  name=$(basename "$f" .onnx)
  start=$EPOCHREALTIME
  onnx2tf -i "$f" -o out/"$name" {LOOP_FLAGS} > logs/"$name".log 2>&1
  echo "$? $name $start $EPOCHREALTIME" >> status.txt
done
"""
JOBS = """[batch]
timeout_s = 300
[matrix]
models = ["models/*.onnx"]
variants = ["fp32"]
[defaults]
profile = {runtimes = []}
"""
TARGETS = {"cold": 4.0, "warm": 20.0}
BIN = Path(sys.executable).parent
# Any download attempt (onnx2tf's sample images) fails at once instead of reaching the network.
DEAD_PROXY = "http://127.0.0.1:9"


def environment() -> dict[str, str]:
    """The shell of a user with the venv active, and no way out to the network."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # onnx2tf also runs the onnxsim found here
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[key] = DEAD_PROXY
    return env


def onnx2tf_would_download(path: Path) -> bool:
    """onnx2tf 1.29 fetches sample images for a model whose inputs are all 4-D with 3 channels."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    shapes = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input if v.name not in initializers]
    return bool(shapes) and all(len(s) == 4 and s[1] == 3 for s in shapes)


def prepare(work: Path, env: dict) -> list[str]:
    """WORK/models/*.onnx: the backend models and freshly exported zoo models; their names."""
    models = work / "models"
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir(parents=True)
    for rel in BACKEND_MODELS:
        shutil.copyfile(DATA_ROOT / rel / "model.onnx", models / f"{Path(rel).name}.onnx")
    # Both exports at once: setup is not measured, and each mostly waits on its own imports.
    exports = {
        name: subprocess.Popen(
            [BIN / "edgepipe", "export", name, "--variant", "fp32", "-o", work / "zoo" / name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ZOO_MODELS
    }
    for name, process in exports.items():
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"setup: edgepipe export {name} failed:\n{err[-2000:]}")
        shutil.copyfile(work / "zoo" / name / "model.onnx", models / f"zoo_{name}.onnx")
    risky = [p.name for p in models.glob("*.onnx") if onnx2tf_would_download(p)]
    if risky:
        raise SystemExit(f"setup: {', '.join(risky)} would make onnx2tf download sample data; drop them")
    return sorted(p.stem for p in models.glob("*.onnx"))


def run_loop(work: Path, env: dict) -> tuple[float, dict[str, float], set[str]]:
    """Wall seconds of the shell loop, seconds per model, and the models it converted."""
    loop = work / "loop"
    shutil.rmtree(loop, ignore_errors=True)
    loop.mkdir()
    (loop / "models").symlink_to(work / "models")
    start = time.perf_counter()
    subprocess.run(["bash", "-c", LOOP], cwd=loop, env=env, check=True)
    wall = time.perf_counter() - start
    seconds, converted = {}, set()
    for line in (loop / "status.txt").read_text().splitlines():
        code, name, began, ended = line.split()
        seconds[name] = float(ended) - float(began)
        if code == "0" and (loop / "out" / name / f"{name}_float32.tflite").is_file():
            converted.add(name)
    return wall, seconds, converted


def run_batch(work: Path, env: dict) -> tuple[float, dict[str, str]]:
    """Wall seconds of one `edgepipe batch --workers 2` and every job's status."""
    start = time.perf_counter()
    done = subprocess.run(
        [BIN / "edgepipe", "batch", "jobs.toml", "-o", "batch", "--workers", "2", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1 means some job failed, which the statuses show
        raise SystemExit(f"edgepipe batch exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, {run["job"]: run["status"] for run in json.loads(done.stdout)["runs"]}


def other_pytest() -> int:
    """Processes with pytest in their command line: a test run sharing the cores skews every figure."""
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            count += b"pytest" in cmdline.read_bytes()
        except OSError:
            continue
    return count


def ratio_line(label: str, loop_s: float, other_s: float, target: float) -> str:
    ratio = loop_s / other_s
    return f"{label}: {ratio:7.1f}x (target >= {target:g}x): {'MET' if ratio >= target else 'NOT MET'}"


def main() -> None:
    """Set up the models, time the three ways, print times, counts and ratios."""
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="edgepipe-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"work directory: {work}", flush=True)
    names = prepare(work, env)
    (work / "jobs.toml").write_text(JOBS)
    shutil.rmtree(work / "batch", ignore_errors=True)  # (2) must start from an empty cache
    print(
        f"models: {len(names)} ({len(BACKEND_MODELS)} onnx backend test models, {len(ZOO_MODELS)} exported zoo models)"
    )
    print(textwrap.fill(", ".join(names), 110, initial_indent="  ", subsequent_indent="  "))
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before timing, "
        f"processes of a pytest run: {other_pytest()}\n",
        flush=True,
    )

    loop_s, per_model, loop_ok = run_loop(work, env)
    cold_s, cold = run_batch(work, env)
    warm_s, warm = run_batch(work, env)
    cold_ok = {n for n, s in cold.items() if s in ("done", "cached")}
    warm_ok = {n for n, s in warm.items() if s in ("done", "cached")}
    cached = sum(s == "cached" for s in warm.values())

    print(
        f"(1) onnx2tf shell loop ({LOOP_FLAGS}): {loop_s:8.2f} s  {len(loop_ok)}/{len(names)} converted "
        f"({loop_s / len(names):.2f} s per model)"
    )
    print(
        f"(2) edgepipe batch --workers 2, cold:    {cold_s:8.2f} s  {len(cold_ok)}/{len(names)} converted and validated"
    )
    print(
        f"(3) edgepipe batch, warm (same dir):     {warm_s:8.2f} s  {len(warm_ok)}/{len(names)} answered "
        f"({cached} from the cache)"
    )
    both = loop_ok & cold_ok
    print(f"\nconverted by both (1) and (2): {len(both)} of {len(names)}")
    for label, only in (
        ("(1) only", loop_ok - cold_ok),
        ("(2) only", cold_ok - loop_ok),
        ("neither", set(names) - loop_ok - cold_ok),
    ):
        if only:
            print(f"  {label}: {', '.join(sorted(only))}")
    compared = loop_s
    if both != set(names):
        # Only models both converted count: the loop's time for the others is taken out
        # (edgepipe's time for them stays in, which can only lower its ratios).
        compared = sum(per_model[n] for n in both)
        print(f"  (1) restricted to those {len(both)}: {compared:.2f} s (sum of its per-model times)")
    print(f"load average after timing: {os.getloadavg()[0]:.2f}, processes of a pytest run: {other_pytest()}\n")
    print(ratio_line("(1)/(2) cold", compared, cold_s, TARGETS["cold"]))
    print(ratio_line("(1)/(3) warm", compared, warm_s, TARGETS["warm"]))


if __name__ == "__main__":
    main()
