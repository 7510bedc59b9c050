"""`edgepipe run` with a [compress] section: channel pruning, magnitude pruning and distillation, end to end."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import edgepipe, quick_job

# Edits of the default job's [compress] lines.
PRUNE = {'prune = "channels"': 'prune = "channels"', "finetune_epochs = 20": "finetune_epochs = 4"}
MAGNITUDE = {'prune = "channels"': 'prune = "magnitude"', "finetune_epochs = 20": "finetune_epochs = 2"}
DISTILL = {
    'prune = "channels"': 'prune = "none"',
    "distill = false": "distill = true",
    "# distill_epochs = 40": "distill_epochs = 6",
    "qat = false": "qat = true",
    "qat_epochs = 10": "qat_epochs = 2",
}


def _job(tmp, name: str, edits: dict[str, str]):
    job = quick_job(tmp, name)
    text = job.read_text().replace('runtimes = ["torch", "onnxruntime", "tflite"]', 'runtimes = ["tflite"]')
    text = text.replace("throughput_batches = [1, 4]", "throughput_batches = []\nop_profile = false")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    job.write_text(text)
    return job


def _run(tmp_path_factory, name: str, edits: dict[str, str], default_run: dict) -> dict:
    """Run the edited job in a copy of the default run's directory: the stage cache keeps its training."""
    tmp = tmp_path_factory.mktemp(name)
    job = _job(tmp, name, edits)
    shutil.copytree(default_run["dir"], tmp / "out")
    done = edgepipe("run", str(job), "-o", str(tmp / "out"))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    assert manifest["stages"]["train"] == default_run["manifest"]["stages"]["train"]  # taken from the cache
    return {"dir": tmp / "out", "manifest": manifest, "compress": manifest["stages"]["compress"]["result"]}


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, default_run):
    return _run(tmp_path_factory, "pruned", PRUNE, default_run)


@pytest.fixture(scope="module")
def magnitude(tmp_path_factory, default_run):
    """Magnitude pruning keeps every shape: its dense fp32 file is the unpruned model's size."""
    return _run(tmp_path_factory, "magnitude", MAGNITUDE, default_run)


def test_channel_pruning_removes_parameters_and_shrinks_the_tflite_file(pruned, magnitude):
    step = pruned["compress"]["steps"][0]
    assert step["step"] == "prune_channels" and step["before"]["parameters"] == 38378
    assert step["parameters"] == 9850 and pruned["compress"]["compressed"]["parameters"] == 9850
    assert [(c["channels"], c["kept"]) for c in step["channels"]] == [(16, 8), (32, 16), (64, 32)]
    size = (pruned["dir"] / "model_fp32.tflite").stat().st_size
    unpruned = (magnitude["dir"] / "model_fp32.tflite").stat().st_size
    assert size < 0.35 * unpruned, (size, unpruned)
    # The exported graph is the pruned one, and it still agrees with its own PyTorch module.
    ledger = json.loads((pruned["dir"] / "ledger.json").read_text())
    assert all(h["ok"] for h in ledger["hops"]) and ledger["metrics"]["tflite:fp32"]["accuracy"] > 0.9


def test_report_shows_compression_variants_and_plots(pruned):
    report = (pruned["dir"] / "report.md").read_text()
    assert "## Compression" in report and "channel pruning 50%" in report and "9,850" in report
    assert "## Variants side by side" in report and "speed-up vs fp32" in report
    for plot in ("plots/size_vs_metric.png", "plots/latency_vs_metric.png"):
        assert f"]({plot})" in report
        assert (pruned["dir"] / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"plots/size_vs_metric.png", "model_compressed.pt2"} <= {a["path"] for a in pruned["manifest"]["artifacts"]}


def test_magnitude_pruning_reports_that_the_dense_file_does_not_shrink(magnitude):
    run = magnitude
    assert run["compress"]["compressed"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert run["compress"]["compressed"]["parameters"] == 38378
    size = (run["dir"] / "model_fp32.tflite").stat().st_size
    weights = 4 * run["compress"]["compressed"]["parameters"]  # float32, zeros included
    assert weights <= size <= 1.05 * weights, (size, weights)
    assert "store tensors densely" in (run["dir"] / "report.md").read_text()


def test_distilled_student_has_at_most_half_the_parameters_and_takes_qat(tmp_path_factory, default_run):
    run = _run(tmp_path_factory, "distilled", DISTILL, default_run)
    step, qat = run["compress"]["steps"]
    assert step["step"] == "distill" and step["student"] == "width 0.5"
    assert step["parameters"] <= run["compress"]["trained"]["parameters"] / 2
    assert qat["step"] == "qat" and qat["train"]["epochs_run"] == 2 and qat["parameters"] == step["parameters"]
    assert "quantization-aware fine-tune" in (run["dir"] / "report.md").read_text()
    ledger = json.loads((run["dir"] / "ledger.json").read_text())
    assert ledger["metrics"]["tflite:fp32"]["accuracy"] > 0.9


def test_compress_needs_a_pytorch_module(tmp_path):
    job = _job(tmp_path, "onnx-compress", PRUNE)
    job.write_text(job.read_text().replace('model = "cnn_digits"', f'model = "{tmp_path / "m.onnx"}"'))
    done = edgepipe("run", str(job), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "[compress] works on a PyTorch module" in done.stderr
    assert not (tmp_path / "out").exists()
