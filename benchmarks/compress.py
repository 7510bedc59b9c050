"""Issue 4's compression targets, measured side by side in one run.

Usage: python benchmarks/compress.py [WORK_DIR]   (a temporary directory when omitted)

Runs real edgepipe jobs (train, compress, export, validate, profile) and prints, for each
target, the measured figures next to the limit; file sizes are also split into tensor data,
quantization parameters, names and graph structure, which is what decides how far a tiny
model's file can shrink.
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import tomllib
from pathlib import Path

from edgepipe.exporters.tflite.inspect import file_composition
from edgepipe.pipeline.core.config import default_job_text, validate_job
from edgepipe.pipeline.core.runner import run_job

ALL_TFLITE = ["fp32", "fp16", "dynamic", "int8", "int8_float_io", "int16x8", "int8_mixed"]
QUICK_PROFILE = {
    "runtimes": ["tflite", "onnxruntime"],
    "warmup_runs": 20,
    "min_runs": 300,
    "min_seconds": 0.5,
    "max_seconds": 3.0,
}


def run(
    work: Path,
    name: str,
    model: str,
    variants: list[str],
    compress: dict | None = None,
    onnx_variants: tuple[str, ...] = (),
    profile: bool = True,
):
    """Run one job and return (its result, its run directory)."""
    data = tomllib.loads(default_job_text())
    data["job"].update(name=name, model=model)
    data["export"].update(variants=variants, onnx_variants=list(onnx_variants))
    data["compress"] = compress or {}
    data.pop("gate", None)
    data["profile"].update(QUICK_PROFILE)
    only = None if profile else ("train", "compress", "export", "validate")
    result = run_job(validate_job(data, name), work / name, only=only)
    return result, work / name


def accuracy(result, key: str) -> float:
    return result.results["validate"]["metrics"][key]["accuracy"]


def p50(result, fmt: str, variant: str) -> float | None:
    rows = result.results.get("profile", {}).get("results", [])
    return next((r["latency_ms"]["p50"] for r in rows if (r["format"], r["variant"]) == (fmt, variant)), None)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def variants_table(result, run_dir: Path) -> None:
    """Every variant of one run: size, ratio, accuracy, drop, SQNR, p50 and speed-up against fp32."""
    base_size = (run_dir / "model_fp32.tflite").stat().st_size
    ref = accuracy(result, "torch")
    print(
        f"  {'artifact':<22}{'bytes':>9}{'vs fp32':>9}{'accuracy':>10}{'drop pt':>9}{'SQNR dB':>9}"
        f"{'p50 ms':>9}{'speed-up':>9}"
    )
    for art in result.results["export"]["artifacts"]:
        key = f"{art['format']}:{art['variant']}"
        size = (run_dir / art["path"]).stat().st_size
        sqnr = result.results["validate"]["ledger"][key]["sqnr_db"]
        lat, base = p50(result, art["format"], art["variant"]), p50(result, art["format"], "fp32")
        print(
            f"  {key:<22}{size:>9,}{size / base_size:>8.2f}x{accuracy(result, key):>10.4f}"
            f"{(ref - accuracy(result, key)) * 100:>9.2f}{sqnr:>9.1f}"
            f"{lat if lat is not None else float('nan'):>9.4f}{(base / lat) if lat and base else float('nan'):>8.2f}x"
        )


def composition(label: str, path: Path) -> None:
    c = file_composition(path)
    print(
        f"  {label:<34}{c.total_bytes:>8,} bytes = tensor data {c.tensor_data_bytes:,} + quantization "
        f"{c.quantization_bytes:,} + names {c.name_bytes:,} + structure {c.structure_bytes:,}"
    )


def main() -> None:
    """Print every target's figures and verdict."""
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="edgepipe-compress-"))
    print(f"work directory: {work}\n")

    cnn, cnn_dir = run(work, "cnn", "cnn_digits", ALL_TFLITE, onnx_variants=("int8_qdq", "dynamic"))
    size = {v: (cnn_dir / f"model_{v}.tflite").stat().st_size for v in ALL_TFLITE}
    drop = (accuracy(cnn, "torch") - accuracy(cnn, "tflite:int8")) * 100
    print("1. cnn_digits, every variant (host, 1 thread)")
    variants_table(cnn, cnn_dir)
    print(
        f"  int8 size {size['int8'] / size['fp32']:.3f}x fp32 (limit 0.30x), drop {drop:.2f} pt (limit 1.0): "
        f"{verdict(size['int8'] / size['fp32'] <= 0.30 and drop <= 1.0)}"
    )
    print(
        f"  fp16 size {size['fp16'] / size['fp32']:.3f}x fp32 (limit 0.55x): "
        f"{verdict(size['fp16'] / size['fp32'] <= 0.55)}\n"
    )

    base, base_dir = run(work, "mobilenet", "mobilenet_digits", ["fp32", "int8"])
    pruned, pruned_dir = run(
        work,
        "mobilenet-pruned",
        "mobilenet_digits",
        ["fp32", "int8"],
        {"prune": "channels", "prune_amount": 0.5, "finetune_epochs": 60},
    )
    fp32_size = (base_dir / "model_fp32.tflite").stat().st_size
    ratio = (pruned_dir / "model_int8.tflite").stat().st_size / fp32_size
    drop = (accuracy(base, "torch") - accuracy(pruned, "tflite:int8")) * 100
    steps = pruned.results["compress"]["steps"][0]
    refused = [r["artifact"] for r in pruned.results["profile"]["results"] if r.get("kernels_note")]
    print("2. mobilenet_digits, 50 % channel pruning + int8, against the unpruned fp32 model")
    variants_table(pruned, pruned_dir)
    print(
        f"  parameters {steps['before']['parameters']:,} -> {steps['parameters']:,}; "
        f"XNNPACK refused: {', '.join(refused) or 'none'}"
    )
    composition("unpruned fp32", base_dir / "model_fp32.tflite")
    composition("unpruned int8", base_dir / "model_int8.tflite")
    composition("pruned int8", pruned_dir / "model_int8.tflite")
    data_ratio = (
        file_composition(pruned_dir / "model_int8.tflite").tensor_data_bytes
        / file_composition(base_dir / "model_fp32.tflite").tensor_data_bytes
    )
    floor = file_composition(pruned_dir / "model_int8.tflite")
    print(
        f"  file {ratio:.3f}x unpruned fp32 (limit 0.15x), drop {drop:.2f} pt (limit 1.5): "
        f"{verdict(ratio <= 0.15 and drop <= 1.5)}"
    )
    print(
        f"  tensor data alone: {data_ratio:.3f}x; names + structure of this graph alone: "
        f"{(floor.name_bytes + floor.structure_bytes) / fp32_size:.3f}x of the unpruned fp32 file\n"
    )

    student, _ = run(
        work, "cnn-student", "cnn_digits", ["fp32"], {"distill": True, "student_width": 0.5}, profile=False
    )
    step = student.results["compress"]["steps"][0]
    teacher = student.results["compress"]["trained"]
    params = step["parameters"] / teacher["parameters"]
    drop = (teacher["metrics"]["accuracy"] - accuracy(student, "tflite:fp32")) * 100
    print("3. cnn_digits distilled into a width-0.5 student (T=4, alpha=0.7)")
    print(
        f"  parameters {teacher['parameters']:,} -> {step['parameters']:,} ({params:.2f}x, limit 0.5x); accuracy "
        f"teacher {teacher['metrics']['accuracy']:.4f}, student {accuracy(student, 'tflite:fp32'):.4f} (TFLite); "
        f"drop {drop:.2f} pt (limit 1.5): {verdict(params <= 0.5 and drop <= 1.5)}\n"
    )

    sparse, sparse_dir = run(work, "cnn-magnitude", "cnn_digits", ["fp32"], {"prune": "magnitude", "prune_amount": 0.5})
    dense_bytes = (cnn_dir / "model_fp32.tflite").read_bytes()
    sparse_bytes = (sparse_dir / "model_fp32.tflite").read_bytes()
    print("4. cnn_digits, 50 % global magnitude pruning (unstructured): what the file gains")
    print(
        f"  sparsity {sparse.results['compress']['compressed']['sparsity']:.1%}; "
        f"TFLite fp32 {len(sparse_bytes):,} bytes vs "
        f"{len(dense_bytes):,} unpruned ({len(sparse_bytes) / len(dense_bytes):.3f}x); gzip -9: "
        f"{len(gzip.compress(sparse_bytes, 9)):,} vs {len(gzip.compress(dense_bytes, 9)):,} bytes; accuracy "
        f"{accuracy(sparse, 'tflite:fp32'):.4f}"
    )
    print(
        f"  host p50: {p50(sparse, 'tflite', 'fp32'):.4f} ms pruned vs {p50(cnn, 'tflite', 'fp32'):.4f} ms unpruned "
        "(dense kernels do the same work)"
    )


if __name__ == "__main__":
    main()
