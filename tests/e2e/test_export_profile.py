"""`edgepipe export` and `edgepipe profile` with --json, as DESIGN.md shapes them."""

import json
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tests.conftest import edgepipe


def test_export_zoo_model_json(tmp_path):
    result = edgepipe("export", "cnn_digits", "--variant", "fp32", "-o", str(tmp_path / "e"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == "cnn_digits" and out["run_dir"] == str(tmp_path / "e")
    tflite = next(a for a in out["artifacts"] if a["format"] == "tflite")
    assert tflite["variant"] == "fp32" and tflite["size_bytes"] > 1000
    assert tflite["inputs"][0]["layout"] == "NHWC" and tflite["metrics"]["accuracy"] >= 0.95
    assert {"reference", "max_abs", "cosine", "sqnr_db", "ok"} <= set(tflite["ledger"])
    assert tflite["ledger"]["ok"] is True and tflite["ledger"]["reference"] == "torch"
    assert not (tmp_path / "e" / "profile.json").exists(), "export does not profile"


def test_export_onnx_file_validates_against_onnxruntime(default_run, tmp_path):
    onnx_file = tmp_path / "user model.onnx"
    onnx_file.write_bytes((default_run["dir"] / "model.onnx").read_bytes())
    result = edgepipe("export", str(onnx_file), "-o", str(tmp_path / "o"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    tflite = next(a for a in out["artifacts"] if a["format"] == "tflite")
    assert tflite["ledger"]["reference"] == "onnx:fp32" and tflite["ledger"]["ok"]
    assert tflite["ledger"]["max_abs"] < 1e-4


def _newest_transpose(tmp_path) -> Path:
    """A Transpose and Reshape at the newest IR and opset the onnx package writes, which ONNX Runtime 1.23
    does not load yet, though nothing in it changed since the versions it does."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6])
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[2, 1, 0]),
        helper.make_node("Reshape", ["t", "shape"], ["y"]),
    ]
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 4, 6])
    graph = helper.make_graph(nodes, "newest", [x], [y], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx.defs.onnx_opset_version())])
    onnx.save(model, str(tmp_path / "newest.onnx"))
    return tmp_path / "newest.onnx"


def _bitshift_uint16(tmp_path) -> Path:
    """A BitShift on uint16, which ONNX Runtime 1.23 has no kernel for."""
    x = helper.make_tensor_value_info("x", TensorProto.UINT16, [3])
    y = helper.make_tensor_value_info("y", TensorProto.UINT16, [3])
    z = helper.make_tensor_value_info("z", TensorProto.UINT16, [3])
    graph = helper.make_graph([helper.make_node("BitShift", ["x", "y"], ["z"], direction="RIGHT")], "g", [x, y], [z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "bitshift.onnx"))
    return tmp_path / "bitshift.onnx"


@pytest.mark.parametrize(
    "make, runner, evidence",
    [
        (
            _newest_transpose,
            "onnxruntime on a copy: IR 12 lowered to 11 (the model uses nothing newer); opset",
            "a copy",
        ),
        (_bitshift_uint16, "onnx.reference: ", "onnx.reference ran it instead"),
    ],
    ids=["newer-ir-and-opset", "op-without-kernel"],
)
def test_a_file_onnx_runtime_cannot_load_is_still_checked(tmp_path, make, runner, evidence):
    path = make(tmp_path)
    with pytest.raises(Exception):
        ort.InferenceSession(str(path))
    result = edgepipe("export", str(path), "-o", str(tmp_path / "o"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    tflite = next(a for a in out["artifacts"] if a["format"] == "tflite")
    assert tflite["ledger"]["reference"] == "onnx:fp32" and tflite["ledger"]["ok"] and tflite["ledger"]["max_abs"] == 0
    ledger = json.loads((tmp_path / "o" / "ledger.json").read_text())
    assert ledger["runners"]["onnx:fp32"].startswith(runner), ledger["runners"]
    assert "not a loadable ONNX model" in ledger["runners"]["onnx:fp32"]
    assert evidence in (tmp_path / "o" / "logs" / "convert.log").read_text()


def test_profile_tflite_json(default_run):
    result = edgepipe("profile", str(default_run["dir"] / "model_fp32.tflite"), "--quick", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["runtime"] == "tflite" and out["device"]["kind"] == "host"
    assert {"p50", "p90", "p99", "mean", "std", "min", "max", "n"} <= set(out["latency_ms"])
    assert out["throughput_ips"] > 0 and out["memory"]["peak_rss_mb"] > 0
    assert out["energy"]["status"] in {"measured", "unavailable"}
    if out["energy"]["status"] == "unavailable":
        assert "RAPL" in out["energy"]["reason"]


def test_profile_onnx_and_pt2_by_suffix(default_run):
    for name, runtime in (("model.onnx", "onnxruntime"), ("model.pt2", "torch")):
        result = edgepipe("profile", str(default_run["dir"] / name), "--quick", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["runtime"] == runtime


def test_int8_mixed_keeps_no_layer_float_when_int8_meets_the_floor(tmp_path):
    from edgepipe.pipeline.report.variants import sensitivity_lines

    variants = "int8_float_io,int8_mixed"
    result = edgepipe("export", "cnn_digits", "--variant", variants, "-o", str(tmp_path / "m"), "--json")
    assert result.returncode == 0, result.stderr
    artifacts = {a["variant"]: a for a in json.loads(result.stdout)["artifacts"] if a["format"] == "tflite"}
    mixed, plain = artifacts["int8_mixed"], artifacts["int8_float_io"]
    choice = mixed["mixed_choice"]
    assert plain["ledger"]["sqnr_db"] > 30 and choice["target_sqnr_db"] == 21.0  # [validate]'s 20 dB + 1 dB
    assert mixed["kept_float"] == [] and choice["met"] and len(choice["steps"]) == 1
    assert abs(mixed["size_bytes"] - plain["size_bytes"]) <= 0.02 * plain["size_bytes"]
    # nn.Sequential's indices name the layers: convs 0 and 3, linears 8 and 10 (see models/zoo builders).
    modules = {(loss["op"], loss["shape"][-1]): loss["module"] for loss in mixed["sensitivity"]}
    assert modules[("FULLY_CONNECTED", 10)] == "10" and modules[("FULLY_CONNECTED", 64)] == "8"
    assert all(isinstance(loss["float_bytes"], int) for loss in mixed["sensitivity"])

    ledger = {f"tflite:{v}": a["ledger"] for v, a in artifacts.items()}
    text = "\n".join(
        sensitivity_lines({"export": {"artifacts": list(artifacts.values())}, "validate": {"ledger": ledger}})
    )
    assert "| `10` | FULLY_CONNECTED |" in text and "reached with 0 layer(s) in float32" in text


def test_a_scalar_output_is_validated_as_a_scalar(tmp_path):
    # a loss-like graph: the mean of everything, keepdims 0, so the output has no batch axis
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])
    loss = helper.make_tensor_value_info("loss", TensorProto.FLOAT, [])
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["loss"], keepdims=0)], "g", [x], [loss])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "loss.onnx"))
    result = edgepipe("export", str(tmp_path / "loss.onnx"), "-o", str(tmp_path / "o"), "--json")
    assert result.returncode == 0, result.stderr
    tflite = next(a for a in json.loads(result.stdout)["artifacts"] if a["format"] == "tflite")
    assert tflite["outputs"][0]["shape"] == [] and tflite["ledger"]["ok"]
    ledger = json.loads((tmp_path / "o" / "ledger.json").read_text())
    assert ledger["samples"] == 96  # 32 random batches of the input's 3 rows, a loss for each batch
    hop = next(h for h in ledger["hops"] if h["candidate"] == "tflite:fp32")
    assert hop["samples"] == 32
