"""The error contract: 0 ok, 1 a failed check, 2 bad input (the user's own code raising included), 3 internal."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from tests.conftest import edgepipe, edgepipe_here

USER_CODE = textwrap.dedent(
    """
    import torch


    def broken():
        raise RuntimeError("checkpoint shape mismatch")


    def tiny():
        return torch.nn.Linear(4, 3), torch.zeros(1, 4)


    def bad_metric(outputs, labels):
        return {"score": 1.0 / 0}


    def bad_loss(outputs, targets):
        raise ValueError("targets must be one-hot")
    """
)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "usercode.py").write_text(USER_CODE)
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "data.npz", input=rng.standard_normal((40, 4)).astype(np.float32), labels=rng.integers(0, 3, 40)
    )
    return tmp_path


def _line_of(project, text: str) -> int:
    return next(i for i, line in enumerate((project / "usercode.py").read_text().splitlines(), 1) if text in line)


def test_a_raising_factory_exits_2_with_its_message_and_file_line(project):
    done = edgepipe("export", "usercode:broken", "-o", "out", cwd=project)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "factory usercode:broken raised RuntimeError: checkpoint shape mismatch" in line
    assert f"usercode.py:{_line_of(project, 'raise RuntimeError')}" in line
    assert not (project / "out" / "manifest.json").exists()


def test_debug_shows_the_users_own_traceback(project):
    done = edgepipe("--debug", "export", "usercode:broken", "-o", "out", cwd=project)
    assert done.returncode == 2
    assert 'raise RuntimeError("checkpoint shape mismatch")' in done.stderr
    assert "direct cause of the following exception" in done.stderr


@pytest.mark.parametrize(
    "setting, message",
    [
        ('[train]\ndata = "data.npz"\nepochs = 1\nloss = "usercode:bad_loss"', "[train] loss usercode:bad_loss raised"),
        ('[train]\ndata = "data.npz"\nepochs = 1\n[validate]\nmetric = "usercode:bad_metric"', "ZeroDivisionError"),
    ],
)
def test_a_raising_loss_or_metric_exits_2_with_its_file_line(project, setting, message):
    job = f'[job]\nname = "t"\nmodel = "usercode:tiny"\n{setting}\n[export]\nvariants = ["fp32"]\n'
    (project / "job.toml").write_text(job)
    done = edgepipe_here("run", "job.toml", "-o", "out", cwd=project)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "usercode.py:" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_internal_error_exits_3(project, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("a bug of ours")

    monkeypatch.setattr("edgepipe.pipeline.core.runner._run_stages", bug)
    (project / "job.toml").write_text('[job]\nname = "t"\nmodel = "usercode:tiny"\n')
    done = edgepipe_here("run", "job.toml", "-o", "out", cwd=project)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("edgepipe: internal error: KeyError") and "please report it" in done.stderr


def test_a_converter_past_its_timeout_is_stopped_and_nothing_is_recorded(project):
    job = '[job]\nname = "t"\nmodel = "usercode:tiny"\n[export]\nvariants = ["fp32"]\nconverter_timeout_s = 0.5\n'
    (project / "job.toml").write_text(job)
    done = edgepipe("run", "job.toml", "-o", "out", cwd=project)  # a fresh process converts in a child
    assert done.returncode == 1, done.stderr
    assert "did not finish within 0.5 s and was stopped" in done.stderr and "converter_timeout_s" in done.stderr
    manifest = json.loads((project / "out" / "manifest.json").read_text())
    assert "export" not in manifest["stages"] and not list((project / "out").glob("*.tflite"))


def test_help_documents_the_exit_codes():
    done = edgepipe_here("--help")
    assert done.returncode == 0 and "3 an internal error" in " ".join(done.stdout.split())
