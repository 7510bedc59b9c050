"""JOBS.toml: matrix expansion, defaults, per-entry overrides, file paths from the batch file's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.batch.config import load_batch, parse_batch

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


@pytest.mark.parametrize(
    "text, words",
    [
        ('[matrix]\nmodels = ["nothing/*.onnx"]\n', "matches no .onnx file"),
        ('[matrix]\nmodels = ["cnn_digits"]\nopset = 17\n', "matrix.opset = 17: Input should be a valid list"),
        ('[batch]\nworkers = 2\n[matrix]\nmodels = ["cnn_digits"]\n', "batch.workers: unknown key"),
        ('[batch]\ntimeout_s = 0\n[matrix]\nmodels = ["cnn_digits"]\n', "batch.timeout_s = 0: Input should be greater"),
        ('[batch]\nstages = "some"\n[matrix]\nmodels = ["cnn_digits"]\n', "batch.stages = 'some'"),
        ('[matrix]\nmodels = ["cnn_digits"]\n[[entry]]\nmodel = "mlp*"\nexport = {opset = 17}\n', "matches no model"),
        (
            '[matrix]\nmodels = ["cnn_digits"]\n[[entry]]\nmodel = "cnn*"\nexprot = {}\n',
            "did you mean 'entry[0].export'",
        ),
        ('[matrix]\nmodels = ["cnn_digits"]\n[defaults]\nexport = {variants = ["fp64"]}\n', "export.variants"),
        ('[matrix]\nmodels = ["cnn_digits"]\nvariants = ["fp64"]\n', "matrix.variants[0] = 'fp64'"),
        ("[batch]\n", "matrix: required key is missing"),
        ('[matrix]\nmodels = ["cnn_digits"]\nopset = []\n', "matrix.opset: List should have at least 1 item"),
        ("[matrix\n", "is not valid TOML"),
    ],
)
def test_every_bad_batch_file_is_one_config_error(tmp_path, text, words):
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_batch(path)
    message = str(error.value)
    assert words in message and str(path) in message and "\n" not in message, message
    assert error.value.exit_code == 2


def test_a_missing_batch_file_says_where_to_look(tmp_path):
    with pytest.raises(ConfigError, match="not found; see examples/batch.toml"):
        load_batch(tmp_path / "missing.toml")
