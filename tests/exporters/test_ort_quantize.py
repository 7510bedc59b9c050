"""ONNX Runtime quantization of a trained cnn_digits: loading, size, accuracy, graph contents and failures."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgepipe.exporters.quantize.ort import ORT_VARIANTS, OnnxQuantExport, quantize_onnx
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.training import TrainSettings, fit
from edgepipe.models.zoo import get_model


@dataclass(frozen=True)
class Digits:
    """The fp32 ONNX export of a trained cnn_digits and the dataset splits it is calibrated and scored on."""

    onnx_path: Path
    work: Path
    x_train: np.ndarray  # NCHW, the ONNX layout
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Digits:
    spec = get_model("cnn_digits")
    fitted = fit(spec, TrainSettings(epochs=15, lr=0.003, batch_size=64, seed=0), threads=2)
    data = spec.dataset(0)
    work = tmp_path_factory.mktemp("ort_quantize")
    examples = (torch.zeros(1, 1, 8, 8),)
    program = torch.export.export(fitted.module, examples)
    export = export_onnx(program, examples, ["x"], work / "model.onnx", work / "export.log")
    return Digits(export.path, work, data.x_train["x"], data.x_test["x"], data.y_test)


@pytest.fixture(scope="module")
def variants(digits) -> dict[str, OnnxQuantExport]:
    out = digits.work / "variants"
    return {
        v: quantize_onnx(
            digits.onnx_path, out / f"model_{v}.onnx", v, out / "quantize.log", calibration={"x": digits.x_train}
        )
        for v in ORT_VARIANTS
    }


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _accuracy(path: Path, digits: Digits) -> float:
    """Argmax accuracy on the test split, one sample per run as the model's batch dim is fixed at 1."""
    session = _session(path)
    logits = np.concatenate([session.run(None, {"x": digits.x_test[i : i + 1]})[0] for i in range(len(digits.x_test))])
    return float((logits.argmax(axis=1) == digits.y_test).mean())


def _ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_variants_load_and_take_the_original_float32_inputs(digits, variants):
    reference = [(i.name, i.type, i.shape) for i in _session(digits.onnx_path).get_inputs()]
    assert reference == [("x", "tensor(float)", [1, 1, 8, 8])]
    for variant, export in variants.items():
        assert export.variant == variant and export.path == digits.work / "variants" / f"model_{variant}.onnx"
        session = _session(export.path)
        assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == reference, variant
        assert session.run(None, {"x": digits.x_test[:1]})[0].shape == (1, 10), variant
    written = sorted(p.name for p in export.path.parent.iterdir())
    assert written == ["model_dynamic.onnx", "model_int8_qdq.onnx", "quantize.log"]  # no temporary file is left


def test_int8_qdq_is_well_under_four_tenths_of_fp32(digits, variants):
    fp32 = digits.onnx_path.stat().st_size
    sizes = {v: e.path.stat().st_size for v, e in variants.items()}
    figures = f"fp32 {fp32} B, " + ", ".join(f"{v} {s} B ({s / fp32:.3f}x)" for v, s in sizes.items())
    assert sizes["int8_qdq"] < 0.36 * fp32, figures
    assert sizes["dynamic"] < 0.45 * fp32, figures  # Conv weights stay float in 'dynamic'


@pytest.mark.parametrize("variant", list(ORT_VARIANTS))
def test_accuracy_within_two_points_of_fp32(digits, variants, variant):
    fp32, quantized = _accuracy(digits.onnx_path, digits), _accuracy(variants[variant].path, digits)
    assert abs(quantized - fp32) <= 0.02, f"accuracy fp32 {fp32:.4f}, {variant} {quantized:.4f}"


def test_int8_qdq_graph_holds_quantize_dequantize_pairs(digits, variants):
    export = variants["int8_qdq"]
    ops = _ops(export.path)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, ops
    fp32 = [numpy_helper.to_array(i) for i in onnx.load(str(digits.onnx_path)).graph.initializer]
    int8 = [numpy_helper.to_array(i) for i in onnx.load(str(export.path)).graph.initializer]
    # Every Conv and Gemm weight is stored as int8 (biases become int32, scales stay float).
    assert sum(w.size for w in int8 if w.dtype == np.int8 and w.ndim >= 2) == sum(w.size for w in fp32 if w.ndim >= 2)
    # Conv, Conv, MaxPool, Reshape, Gemm, Gemm all sit between DequantizeLinear and QuantizeLinear.
    assert export.quantized_nodes == 6, (export.quantized_nodes, ops)


def test_dynamic_graph_computes_on_integers(variants):
    export = variants["dynamic"]
    ops = _ops(export.path)
    assert "DynamicQuantizeLinear" in ops and ops.count("MatMulInteger") == 2, ops
    assert "Conv" in ops and "ConvInteger" not in ops, ops  # ORT has no int8-weight ConvInteger kernel on CPU
    assert export.quantized_nodes == 2


@pytest.mark.parametrize(
    "calibration", [None, {}, {"x": np.zeros((0, 1, 8, 8), np.float32)}], ids=["none", "no-input", "empty"]
)
def test_missing_or_empty_calibration_names_the_input(digits, tmp_path, calibration):
    with pytest.raises(ExportError, match=r"'x'.*'dynamic'"):
        quantize_onnx(digits.onnx_path, tmp_path / "q.onnx", "int8_qdq", tmp_path / "q.log", calibration)
    assert list(tmp_path.iterdir()) == []


def test_channels_last_calibration_is_refused(digits, tmp_path):
    nhwc = np.ascontiguousarray(digits.x_train[:8].transpose(0, 2, 3, 1))
    with pytest.raises(ExportError, match=r"'x' has calibration samples of shape \(8, 8, 8, 1\).*ONNX layout"):
        quantize_onnx(digits.onnx_path, tmp_path / "q.onnx", "int8_qdq", tmp_path / "q.log", {"x": nhwc})


def test_integer_input_asks_for_dynamic(tmp_path):
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Cast", ["ids"], ["y"], to=TensorProto.FLOAT)], "g", [ids], [out])
    path = tmp_path / "ids.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ExportError, match=r"'ids' is int64.*'dynamic'"):
        quantize_onnx(path, tmp_path / "q.onnx", "int8_qdq", tmp_path / "q.log", {"ids": np.ones((3, 4), np.int64)})


def test_unknown_variant_lists_the_variants(digits, tmp_path):
    with pytest.raises(ExportError, match="int8_qdq, dynamic"):
        quantize_onnx(digits.onnx_path, tmp_path / "q.onnx", "int4", tmp_path / "q.log")


@pytest.mark.parametrize("variant", list(ORT_VARIANTS))
def test_failed_quantization_leaves_no_file(tmp_path, variant):
    # A valid ONNX file whose custom op ONNX Runtime does not know: its quantization tools fail on it.
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y"))
    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["t"], name="mm"),
        helper.make_node("Frobnicate", ["t"], ["y"], domain="com.example", name="custom"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], [weight]),
        ir_version=10,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    source, out_dir, log = tmp_path / "custom.onnx", tmp_path / "out", tmp_path / "q.log"
    onnx.save(model, str(source))
    with pytest.raises(ExportError, match=f"custom.onnx -> {variant}: ONNX Runtime quantization failed: .*Frobnicate"):
        quantize_onnx(source, out_dir / "q.onnx", variant, log, {"x": np.ones((3, 4), np.float32)})
    assert list(out_dir.iterdir()) == []  # neither the output nor its temporary file
    assert "Traceback" in log.read_text()


@pytest.mark.parametrize("variant", list(ORT_VARIANTS))
def test_nodes_to_exclude_keep_the_node_in_float(digits, variants, tmp_path, monkeypatch, variant):
    graph = onnx.load(str(digits.onnx_path)).graph
    last = [n.name for n in graph.node if n.op_type == "Gemm"][-1]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # to see every temporary file go
    (tmp_path / "tmp").mkdir()
    export = quantize_onnx(
        digits.onnx_path,
        tmp_path / "q.onnx",
        variant,
        tmp_path / "q.log",
        {"x": digits.x_train[:200]},
        nodes_to_exclude=(last,),
    )
    assert export.excluded_nodes == (last,)
    assert export.quantized_nodes == variants[variant].quantized_nodes - 1
    written = onnx.load(str(export.path)).graph
    # 'dynamic' rewrites every Gemm into MatMul + Add (ORT does, in float) before quantizing; an excluded one stays so.
    kept = [n for n in written.node if n.name in (last, f"{last}_MatMul", f"{last}_Add")]
    assert [n.op_type for n in kept] in (["Gemm"], ["MatMul", "Add"]), kept
    producers = {out: n.op_type for n in written.node for out in n.output}
    floats = {i.name for i in written.initializer if i.data_type == TensorProto.FLOAT}
    assert kept[0].input[1] in floats and kept[0].input[1] not in producers  # a float weight, not dequantized
    quantizers = [n for n in written.node if n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear")]
    assert not any(out in q.input for node in kept for out in node.output for q in quantizers)
    assert list((tmp_path / "tmp").iterdir()) == [], "ORT's calibration files were left behind"


def test_unknown_excluded_node_is_named(digits, tmp_path):
    with pytest.raises(ExportError, match="no node named 'node_nope'"):
        quantize_onnx(
            digits.onnx_path, tmp_path / "q.onnx", "dynamic", tmp_path / "q.log", nodes_to_exclude=("node_nope",)
        )
    assert [p.name for p in tmp_path.iterdir()] == ["q.log"]
