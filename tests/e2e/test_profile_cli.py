"""`edgepipe profile` as a user runs it: --quick, --json, --inputs, --batch and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import edgepipe
from tests.profile_models import onnx_graph

LATENCY_KEYS = {"p50", "p90", "p99", "mean", "std", "min", "max", "n"}


@pytest.fixture(scope="module")
def models(cnn_files) -> dict[str, Path]:
    return cnn_files


def _profiled(*args: str) -> dict:
    result = edgepipe("profile", *args, "--quick", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _one_line_error(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgepipe: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def test_quick_json_has_the_design_keys_and_more(models):
    out = _profiled(str(models["int8"]))
    assert out["artifact"] == str(models["int8"]) and out["runtime"] == "tflite"
    assert out["device"]["kind"] == "host" and LATENCY_KEYS <= set(out["latency_ms"])
    assert out["latency_ms"]["n"] >= 50 and out["throughput_ips"] > 0 and out["batch"] == 1
    assert {"peak_rss_mb", "model_size_bytes", "peak_rss_load_mb"} <= set(out["memory"])
    assert 0 < out["memory"]["peak_rss_load_mb"] <= out["memory"]["peak_rss_mb"]
    assert out["library"].startswith("ai_edge_litert ") and out["kernels"] == "xnnpack"
    assert out["settings"]["min_runs"] == 50 and out["settings"]["max_seconds"] <= 5
    if Path("/sys/class/powercap").exists():
        assert out["energy"]["status"] in {"measured", "unavailable"}
    else:  # this machine: no counters, so no number, and the reason says why
        assert out["energy"] == {"status": "unavailable", "reason": out["energy"]["reason"]}
        assert "RAPL" in out["energy"]["reason"]
    assert "samples_ns" not in out


def test_runtime_knobs_reach_the_profile(models):
    out = _profiled(str(models["fp32"]), "--no-xnnpack", "--batch", "4")
    assert out["kernels"] == "builtin" and out["batch"] == 4 and out["settings"]["xnnpack"] is False
    assert out["samples_per_second"] == pytest.approx(4 * out["throughput_ips"])
    out = _profiled(str(models["onnx"]), "--ort-optimization", "basic")
    assert out["kernels"] == "cpu, optimization basic" and out["library"].startswith("onnxruntime ")


def test_inputs_file_good_quantized_and_mismatched(models, tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32))
    # float values for the int8 model's int8 input are quantized with its scale and zero point
    assert _profiled(str(models["int8"]), "--inputs", str(good))["runtime"] == "tflite"
    cases = {
        "named.npz": (
            {"image": np.zeros((1, 8, 8, 1), np.float32)},
            ("no array for input(s) 'x'", "'image' match no input"),
        ),
        "shape.npz": (
            {"x": np.zeros((1, 8, 8, 3), np.float32)},
            ("input 'x' has shape [1, 8, 8, 3]", "takes [1, 8, 8, 1]"),
        ),
        "batch.npz": ({"x": np.zeros((2, 8, 8, 1), np.float32)}, ("[2, 8, 8, 1]", "--batch 2")),
        "dtype.npz": ({"x": np.zeros((1, 8, 8, 1), np.float64)}, ("input 'x' is float64", "takes float32")),
    }
    for name, (arrays, fragments) in cases.items():
        np.savez(tmp_path / name, **arrays)
        _one_line_error(edgepipe("profile", str(models["fp32"]), "--inputs", str(tmp_path / name)), name, *fragments)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    _one_line_error(
        edgepipe("profile", str(models["fp32"]), "--inputs", str(tmp_path / "junk.npz")),
        "junk.npz",
        "not a readable .npz",
    )


def test_batch_on_fixed_and_dynamic_onnx(models, tmp_path):
    line = _one_line_error(
        edgepipe("profile", str(models["onnx"]), "--batch", "4"),
        "input 'x' has a fixed batch of 1",
        "dynamic first dimension",
    )
    assert str(models["onnx"]) in line
    dynamic = onnx_graph(tmp_path / "dyn_batch.onnx", ["N", 16])
    out = _profiled(str(dynamic), "--batch", "4")
    assert out["batch"] == 4 and out["runtime"] == "onnxruntime"


def test_open_dimension_needs_inputs(tmp_path):
    ragged = onnx_graph(tmp_path / "ragged.onnx", ["N", 3, "L"])
    _one_line_error(
        edgepipe("profile", str(ragged)), "ragged.onnx", "input 'x' has open dimension 2", "[?, 3, ?]", "--inputs"
    )
    np.savez(tmp_path / "x.npz", x=np.ones((2, 3, 5), np.float32))
    out = _profiled(str(ragged), "--inputs", str(tmp_path / "x.npz"))
    assert out["batch"] == 2


def test_unknown_ort_level_is_one_line(models):
    _one_line_error(
        edgepipe("profile", str(models["onnx"]), "--ort-optimization", "max"),
        "'max' is unknown",
        "disable, basic, extended, all",
    )


def test_torchscript_runs_from_an_inputs_file_and_says_what_it_needs(tmp_path):
    import torch
    from torch import nn

    torch.manual_seed(0)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).eval())
    scripted.save(str(tmp_path / "model.pt"))
    np.savez(tmp_path / "x.npz", input=np.ones((4, 16), np.float32))
    done = edgepipe("profile", str(tmp_path / "model.pt"), "--inputs", str(tmp_path / "x.npz"), "--quick", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["runtime"] == "torch" and result["kernels"] == "torchscript" and result["latency_ms"]["n"] >= 50

    no_inputs = edgepipe("profile", str(tmp_path / "model.pt"), "--quick")
    assert no_inputs.returncode == 2 and "records no input shapes (TorchScript); pass --inputs" in no_inputs.stderr

    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "weights.pt")
    state_dict = edgepipe("profile", str(tmp_path / "weights.pt"), "--quick")
    assert state_dict.returncode == 2 and "is not a TorchScript module" in state_dict.stderr
    assert len(state_dict.stderr.strip().splitlines()) == 1
