"""`edgepipe run` end to end with real torch, ONNX Runtime, onnx2tf and TFLite."""

import json
import os
import shutil

import pytest

from edgepipe.pipeline.core.store import sha256_file
from edgepipe.profilers.energy import package_domains
from tests.conftest import edgepipe


def test_run_succeeds_and_prints_the_summary(default_run):
    first = default_run["first"]
    assert first.returncode == 0, first.stderr
    assert "model_fp32.tflite" in first.stdout and "p50" in first.stdout
    assert "Unable to register" not in first.stdout + first.stderr, "TensorFlow noise must go to the log"
    assert (default_run["dir"] / "logs" / "convert.log").stat().st_size > 0


def test_every_manifest_entry_matches_its_file(default_run):
    manifest = default_run["manifest"]
    paths = {a["path"] for a in manifest["artifacts"]}
    assert {
        "model.pt",
        "model.pt2",
        "model.onnx",
        "model_fp32.tflite",
        "ledger.json",
        "profile.json",
        "report.md",
        "logs/convert.log",
    } <= paths
    for entry in manifest["artifacts"]:
        path = default_run["dir"] / entry["path"]
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["size_bytes"]
    assert manifest["versions"]["onnx2tf"] and manifest["versions"]["tensorflow"] and manifest["versions"]["torch"]
    assert set(manifest["stages"]) == {"train", "compress", "export", "validate", "profile", "report"}
    assert not list(default_run["dir"].glob(".staging-*"))


def test_ledger_within_tolerance_and_accuracy_kept(default_run):
    ledger = json.loads((default_run["dir"] / "ledger.json").read_text())
    hops = {h["hop"]: h for h in ledger["hops"]}
    assert {"torch -> onnx:fp32", "torch -> tflite:fp32", "onnx:fp32 -> tflite:fp32"} <= set(hops)
    for hop in (h for name, h in hops.items() if name.endswith(":fp32")):  # float files; fp16 and int8 by SQNR
        for out in hop["outputs"]:
            assert out["max_abs"] <= 1e-4 * out["scale"], (hop["hop"], out)
            assert out["cosine"] > 0.99999
    torch_acc = ledger["metrics"]["torch"]["accuracy"]
    assert torch_acc >= 0.95
    for key, metrics in ledger["metrics"].items():
        assert metrics["accuracy"] >= 0.95 and abs(metrics["accuracy"] - torch_acc) <= 0.01, key
    assert ledger["samples"] == 360


def test_tflite_input_layout_is_recorded(default_run):
    export = default_run["manifest"]["stages"]["export"]["result"]["artifacts"]
    tflite = next(a for a in export if a["format"] == "tflite")
    assert tflite["inputs"] == [{"name": "x", "shape": [1, 8, 8, 1], "dtype": "float32", "layout": "NHWC"}]


def test_profile_has_the_design_keys_for_three_runtimes(default_run):
    profile = json.loads((default_run["dir"] / "profile.json").read_text())
    by_runtime = {r["runtime"]: r for r in profile["results"]}
    assert set(by_runtime) == {"torch", "onnxruntime", "tflite"}
    assert by_runtime["tflite"]["kernels"] == "xnnpack" and "kernels_note" not in by_runtime["tflite"]
    for r in by_runtime.values():
        lat = r["latency_ms"]
        assert {"p50", "p90", "p99", "mean", "std", "min", "max", "n"} <= set(lat)
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] and lat["n"] >= 50
        assert len(r["samples_ns"]) == lat["n"] and r["throughput_ips"] > 0
        assert r["device"]["kind"] == "host"
        assert r["memory"]["model_size_bytes"] == (default_run["dir"] / r["artifact"]).stat().st_size
        assert 10 < r["memory"]["peak_rss_mb"] < 4000
        if not package_domains()[0]:
            assert r["energy"]["status"] == "unavailable" and r["energy"]["reason"]


def test_rerun_reuses_every_stage(default_run):
    second = default_run["second"]
    assert second.returncode == 0, second.stderr
    assert "stages from cache: train, compress, export, validate, profile, report" in " ".join(second.stdout.split())
    manifest = json.loads((default_run["dir"] / "manifest.json").read_text())
    assert manifest["artifacts"] == default_run["manifest"]["artifacts"]


def _rerun_copy(default_run: dict, tmp_path, old: str, new: str):
    """Rerun the default job, with one setting changed, on a copy of its run directory."""
    run_dir = tmp_path / "copy"
    shutil.copytree(default_run["dir"], run_dir)
    job = tmp_path / "job.toml"
    job.write_text(default_run["job"].read_text().replace(old, new))
    return run_dir, edgepipe("run", str(job), "-o", str(run_dir))


def test_changed_profile_settings_rerun_only_profile_and_report(default_run, tmp_path):
    _, result = _rerun_copy(default_run, tmp_path, "min_runs = 50", "min_runs = 60")
    assert result.returncode == 0, result.stderr
    assert "stages from cache: train, compress, export, validate;" in " ".join(result.stdout.split())


def test_report_lists_artifacts_and_latency(default_run):
    report = (default_run["dir"] / "report.md").read_text()
    assert "model_fp32.tflite" in report and "## Host latency" in report and "onnx2tf 1.29" in report


def test_per_op_profiles_and_throughput_are_recorded_and_reported(default_run):
    profiles = json.loads((default_run["dir"] / "profile.json").read_text())["results"]
    results = {r["runtime"]: r for r in profiles if r["variant"] == "fp32"}
    for runtime in ("tflite", "onnxruntime"):
        ops = results[runtime]["op_profile"]
        assert ops["status"] == "measured" and ops["runs"] == 50 and ops["op_total_ms"] > 0, ops
        assert sum(op["share"] for op in ops["ops"]) == pytest.approx(1.0)
    # an int8 file whose every op takes under the profiler's microsecond says so, and is not a zero
    int8 = next(r for r in profiles if r["variant"] == "int8")["op_profile"]
    assert int8["status"] == "measured" or "below its 1 microsecond resolution" in int8["reason"]
    assert "op_profile" not in results["torch"]
    points = {(p["batch"], p["threads"]): p for p in results["tflite"]["throughput"]}
    assert set(points) == {(b, t) for b in (1, 4) for t in range(1, (os.cpu_count() or 1) + 1)}
    assert points[(1, 1)]["status"] == "measured" and points[(1, 1)]["inferences_per_second"] > 0
    onnx_batch4 = next(p for p in results["onnxruntime"]["throughput"] if p["batch"] == 4)
    assert onnx_batch4["status"] == "unavailable" and "fixes batch 1" in onnx_batch4["reason"]
    report = (default_run["dir"] / "report.md").read_text()
    assert "## Per-op time" in report and "Op times add up to" in report and "| Conv |" in report
    assert "## Throughput" in report and "n/a: the ONNX graph fixes batch 1" in report
    for plot in ("plots/latency_distribution.png", "plots/throughput_model_fp32_tflite.png"):
        assert f"]({plot})" in report and (default_run["dir"] / plot).is_file()


def test_parity_failure_exits_1_and_is_not_recorded_as_done(default_run, tmp_path):
    run_dir, result = _rerun_copy(default_run, tmp_path, "rel_tolerance = 1e-4", "rel_tolerance = 1e-12")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("edgepipe: error: numerics out of tolerance: ")
    for hop in ("torch -> torch:fp32", "torch -> onnx:fp32", "torch -> tflite:fp32", "onnx:fp32 -> tflite:fp32"):
        assert f"{hop} output 'output_0': max_abs" in line, hop
    assert "SQNR" in line and "ledger.json" in line
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "validate" not in manifest["stages"] and "profile" in manifest["stages"]
    assert "ledger.json" not in {a["path"] for a in manifest["artifacts"]}
    assert json.loads((run_dir / "ledger.json").read_text())["rel_tolerance"] == 1e-12
    assert not list(run_dir.glob(".staging-*"))


def test_report_tables_repeat_no_sentence_and_progress_stays_off_stdout(default_run):
    first = default_run["first"]
    assert "train: started" in first.stderr and "train: started" not in first.stdout
    table: list[list[str]] = []
    for line in [*(default_run["dir"] / "report.md").read_text().splitlines(), ""]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
            continue
        sentences = [cell for row in table for cell in row if len(cell.split()) >= 5]
        assert len(sentences) == len(set(sentences)), sentences
        table = []
