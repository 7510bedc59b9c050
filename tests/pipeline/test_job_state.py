"""A warm batch worker runs job after job in one process: each must start from the same process state."""

from __future__ import annotations

import sys

import torch

from edgepipe.pipeline.batch.pool import Task, run_task
from edgepipe.pipeline.core.exporting import export_job
from edgepipe.pipeline.core.runner import EXPORT_ONLY

PROBES = """
import os
import torch

def _probe():
    with open(os.environ["EDGEPIPE_STATE_PROBE"], "a") as f:
        f.write(f"{torch.get_num_threads()}\\n")
    return torch.nn.Sequential(torch.nn.Linear(4, 3))

def first():
    return _probe()

def second():
    return _probe()
"""


def test_two_jobs_in_one_worker_process_start_from_the_same_state(tmp_path, monkeypatch):
    # Between the two probes a zoo job trains on 3 threads (torch.set_num_threads) and then
    # validates on every core; the next job must still see the worker's own thread count, and
    # the current directory that importing a user's module added to sys.path must be gone.
    (tmp_path / "probes.py").write_text(PROBES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPIPE_STATE_PROBE", str(tmp_path / "threads.txt"))
    zoo = export_job("mlp_tabular", ("fp32",)).to_toml_dict()
    zoo["train"].update(epochs=1, threads=3)
    jobs = [
        ("first", export_job("probes:first", ("fp32",), example_inputs=("1x4",)).to_toml_dict()),
        ("zoo", zoo),
        ("second", export_job("probes:second", ("fp32",), example_inputs=("1x4",)).to_toml_dict()),
    ]
    threads, path = torch.get_num_threads(), list(sys.path)
    torch.set_num_threads(1)
    try:
        outcomes = [run_task(Task(name, job, str(tmp_path / name), EXPORT_ONLY)) for name, job in jobs]
        after = torch.get_num_threads(), list(sys.path)
    finally:
        torch.set_num_threads(threads)
    assert [o["status"] for o in outcomes] == ["done"] * 3, outcomes
    assert "train" in outcomes[1]["stages_run"]
    assert (tmp_path / "threads.txt").read_text().split() == ["1", "1"]
    assert after == (1, path)
