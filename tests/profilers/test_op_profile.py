"""Per-op profiles from the real runtimes' own profilers add up to the measured latency."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.exporters.convert import export_tflite
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.errors import InputFileError, ProfileError
from edgepipe.models.shared.specs import InputSpec
from edgepipe.profilers.op_profile import OpProfile, profile_ops


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> dict:
    """A small CNN on a 1x1x32x32 input, big enough (about 2 ms) that kernels dominate each run."""
    work = tmp_path_factory.mktemp("op_profile")
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 10),
    ).eval()
    example = (torch.zeros(1, 1, 32, 32),)
    onnx_file = export_onnx(torch.export.export(module, example), example, ["x"], work / "cnn.onnx", work / "log")
    spec = (InputSpec("x", (1, 1, 32, 32), "float32", "NCHW"),)
    tflite = export_tflite(onnx_file.path, work / "cnn.tflite", "fp32", work / "log", spec)
    nchw = np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)
    assert tflite.inputs[0].shape == (1, 32, 32, 1)
    return {"onnx": onnx_file.path, "tflite": tflite.path, "nchw": nchw, "nhwc": nchw.transpose(0, 2, 3, 1).copy()}


def _by_type(profile: OpProfile) -> dict[str, int]:
    return {op.op_type: op.count for op in profile.ops}


def _check_consistent(profile: OpProfile, runs: int) -> None:
    """Shares sum to one, slowest first, totals agree, JSON-ready, and ops add up to the wall time."""
    assert profile.runs == runs
    assert sum(op.share for op in profile.ops) == pytest.approx(1.0)
    assert [op.total_ms for op in profile.ops] == sorted((op.total_ms for op in profile.ops), reverse=True)
    assert sum(op.total_ms for op in profile.ops) == pytest.approx(profile.op_total_ms)
    assert json.loads(json.dumps(profile.to_dict()))["ops"][0]["op_type"] == profile.ops[0].op_type
    # Op events lie inside each run. How close their sum comes to the latency is a timing figure,
    # printed by benchmarks/op_profile_sum.py, not asserted on a shared machine.
    assert 0 < profile.op_total_ms <= 1.05 * profile.wall_ms, profile


def test_tflite_profile_counts_xnnpack_operators_and_adds_up(cnn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profile = profile_ops("tflite", cnn["tflite"], {"x": cnn["nhwc"]}, threads=1, runs=40)
    assert profile.runtime == "tflite" and "LiteRT profiler" in profile.source
    counts = _by_type(profile)
    # LiteRT's CPU accelerator runs the graph in XNNPACK, which names its own operators.
    assert sum(n for t, n in counts.items() if t.startswith("Convolution")) == 5, counts
    assert sum(n for t, n in counts.items() if t.startswith("Max Pooling")) == 2, counts
    assert sum(n for t, n in counts.items() if t.startswith("Fully Connected")) == 1, counts
    assert profile.ops[0].op_type.startswith("Convolution")
    _check_consistent(profile, 40)
    assert os.listdir(tmp_path) == []


def test_onnxruntime_profile_counts_kernels_and_adds_up(cnn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profile = profile_ops("onnxruntime", cnn["onnx"], {"x": cnn["nchw"]}, threads=1, runs=40)
    assert profile.runtime == "onnxruntime" and "Node events" in profile.source
    counts = _by_type(profile)
    assert sum(n for t, n in counts.items() if "Conv" in t) == 5, counts
    assert counts.get("MaxPool") == 2, counts
    assert sum(n for t, n in counts.items() if "Gemm" in t or t == "MatMul") == 1, counts
    _check_consistent(profile, 40)
    assert os.listdir(tmp_path) == []  # the profile JSON went to a private temporary directory


@pytest.mark.parametrize("runtime, suffix", [("tflite", ".tflite"), ("onnxruntime", ".onnx")])
def test_corrupted_file_is_one_clear_line(tmp_path, runtime, suffix):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(b"not a model " * 64)
    with pytest.raises((ProfileError, InputFileError)) as caught:
        profile_ops(runtime, bad, {"x": np.zeros((1, 32, 32, 1), np.float32)}, runs=2)
    assert str(bad) in str(caught.value) and "\n" not in str(caught.value)


def test_wrong_feeds_and_unknown_runtime_are_one_line(cnn):
    with pytest.raises(ProfileError, match="feeds are named"):
        profile_ops("tflite", cnn["tflite"], {"y": cnn["nhwc"]}, runs=2)
    with pytest.raises(ProfileError, match=r"takes float32 \[1, 32, 32, 1\]"):
        profile_ops("tflite", cnn["tflite"], {"x": cnn["nchw"][0]}, runs=2)
    with pytest.raises(ProfileError, match="could not run the feeds"):
        profile_ops("onnxruntime", cnn["onnx"], {"x": cnn["nhwc"]}, runs=2)
    with pytest.raises(ProfileError, match="not 'torch'"):
        profile_ops("torch", cnn["onnx"], {"x": cnn["nchw"]})
