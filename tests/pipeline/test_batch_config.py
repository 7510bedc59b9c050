"""JOBS.toml: matrix expansion, defaults, per-entry overrides, file paths from the batch file's folder."""

from __future__ import annotations

from pathlib import Path

from pipeline.batch.config import load_batch, parse_batch

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_example_expands_to_one_job_per_model():
    settings, jobs = load_batch(ROOT / "examples" / "batch.toml")
    by_name = {j.name: j.job for j in jobs}
    assert sorted(by_name) == ["cnn_digits", "mlp_tabular", "mobilenet_digits", "tiny_chain"]
    assert by_name["cnn_digits"].export.variants == ("fp32", "fp16", "int8")  # the *_digits entry
    assert by_name["mlp_tabular"].export.variants == ("fp32", "fp16") and by_name["mlp_tabular"].train.threads == 1
    assert by_name["tiny_chain"].job.model == str((ROOT / "examples" / "onnx" / "tiny_chain.onnx").resolve())
    assert settings.name == "first-batch" and settings.stages == "export"


def test_axes_multiply_jobs_and_entries_override(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"")
    data = {
        "matrix": {"models": ["cnn_digits", "userpkg:net"], "variants": ["fp32"], "opset": [17, 18]},
        "defaults": {"validate": {"rel_tolerance": 1e-3}},
        "entry": [{"model": "userpkg:*", "inputs": ["1x4"], "validate": {"inputs": "x.npz"}}],
    }
    _, jobs = parse_batch(data, tmp_path, "jobs.toml")
    assert [j.name for j in jobs] == [
        "cnn_digits-opset17",
        "cnn_digits-opset18",
        "userpkg_net-opset17",
        "userpkg_net-opset18",
    ]
    user = jobs[2].job
    assert user.job.inputs == ("1x4",) and user.validate_.inputs == str(tmp_path / "x.npz")
    assert user.export.opset == 17 and user.validate_.rel_tolerance == 1e-3
