from pathlib import Path

import pytest

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.core.config import default_job_text, load_job, parse_job

HEAD = '[job]\nname = "a"\nmodel = "cnn_digits"\n'


def test_default_job_is_valid_and_embedded():
    job = load_job(None)
    assert job.job.model == "cnn_digits" and job.export.variants == ("fp32", "fp16", "int8")
    assert job.compress.prune == "channels" and job.profile.paired_with == ("tflite:fp32",)
    assert parse_job(default_job_text(), "x") == job


def test_default_jobs_gate_is_examples_budgets():
    """The default job's [[gate.budget]] tables are examples/budgets.toml's, so the README's gate command agrees."""
    from edgepipe.pipeline.gate.budgets import job_budgets, load_budgets

    examples = Path(__file__).parents[2] / "examples" / "budgets.toml"
    assert job_budgets(load_job(None).gate).budgets == load_budgets(examples).budgets


def test_gate_takes_a_budgets_file_or_tables_not_both():
    with pytest.raises(ConfigError, match="either budgets"):
        parse_job(HEAD + "[gate]\nstrict = true\n", "job.toml")
    with pytest.raises(ConfigError, match="either budgets"):
        parse_job(HEAD + '[gate]\nbudgets = "b.toml"\n[[gate.budget]]\nmax_size = "1 KiB"\n', "job.toml")


def test_near_miss_key_names_the_path_and_the_intended_key():
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key; did you mean 'train\.epochs'\?"):
        parse_job(HEAD + "[train]\nepoch = 3\n", "job.toml")
    with pytest.raises(ConfigError, match=r"trian: unknown key; did you mean 'train'\?"):
        parse_job(HEAD + "[trian]\nepochs = 3\n", "job.toml")


def test_wrong_type_and_missing_key_are_both_reported():
    with pytest.raises(ConfigError) as err:
        parse_job('[job]\nname = "a"\n[train]\nepochs = "many"\n', "job.toml")
    assert "job.model: required key is missing" in str(err.value)
    assert "train.epochs" in str(err.value) and "'many'" in str(err.value)


def test_unparsable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[job\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_job(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_job(tmp_path / "missing.toml")


def test_config_is_frozen():
    job = load_job(None)
    with pytest.raises(Exception):
        job.train.epochs = 1
