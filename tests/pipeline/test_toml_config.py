"""One TOML reader and one kind of message for every settings file: job, budgets, batch, user config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.batch.config import load_batch
from edgepipe.pipeline.core.config import load_job
from edgepipe.pipeline.gate.budgets import load_budgets
from edgepipe.pipeline.profile.devices import benchmark_binary, user_config_path

# A misspelt key in each kind of file, and the did-you-mean line it must give.
MISSPELT = {
    "job": (load_job, '[job]\nname = "j"\nmodel = "cnn_digits"\n[train]\nepoch = 2\n', "train.epoch", "train.epochs"),
    "budgets": (load_budgets, '[[budget]]\nmax_sise = "1 KiB"\n', "budget[0].max_sise", "budget[0].max_size"),
    "batch": (load_batch, '[matrix]\nmodel = ["cnn_digits"]\n', "matrix.model", "matrix.models"),
}


@pytest.mark.parametrize("kind", MISSPELT)
def test_a_misspelt_key_reads_the_same_in_every_file(kind, tmp_path):
    load, text, where, meant = MISSPELT[kind]
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load(path)
    assert str(error.value).startswith(f"{path}: ")
    assert f"{where}: unknown key; did you mean {meant!r}?" in str(error.value)


@pytest.mark.parametrize("load", [load_job, load_budgets, load_batch])
def test_malformed_toml_is_one_line_in_every_file(load, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[table\n")
    with pytest.raises(ConfigError, match="is not valid TOML") as error:
        load(path)
    assert "\n" not in str(error.value) and error.value.exit_code == 2


def test_the_user_config_gives_the_benchmark_binary_and_refuses_unknown_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert benchmark_binary(None) is None  # no file: nothing configured
    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text('benchmark_binary = "~/bin/benchmark_model"\n')
    assert benchmark_binary(None) == Path("~/bin/benchmark_model").expanduser()
    assert benchmark_binary(Path("/given")) == Path("/given")
    path.write_text('benchmark_bianry = "x"\n')
    with pytest.raises(ConfigError, match="benchmark_bianry: unknown key; did you mean 'benchmark_binary'"):
        benchmark_binary(None)
