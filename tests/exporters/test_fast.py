"""int8_fast: op types whose int8 kernels are slower on the target stay float32, chosen from real op profiles
and whole files timed on this host."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepipe.exporters.quantize.fast import FastStep, FastTarget, _search, write_fast
from edgepipe.exporters.tflite.op_names import builtin_op, by_builtin_op
from edgepipe.models.shared.errors import ExportError


@pytest.fixture(scope="module")
def token_mixer_fast(tmp_path_factory):
    """The token mixer (LayerNorm and softmax over 1024 tokens) exported to fp32 and int8_fast, timed on this host."""
    import torch

    from edgepipe.exporters.convert import export_tflite_variants
    from edgepipe.exporters.torch.to_onnx import export_onnx
    from edgepipe.models.shared.specs import InputSpec
    from edgepipe.pipeline.core.int8_target import HostTimer
    from tests.profile_models import token_mixer

    work = tmp_path_factory.mktemp("fast")
    module, example = token_mixer()
    program = torch.export.export(module, (example,))
    onnx_file = export_onnx(program, (example,), ["x"], work / "model.onnx", work / "log").path
    calibration = {"x": np.random.default_rng(0).standard_normal((32, 8, 32, 32)).astype(np.float32)}
    spec = (InputSpec("x", (1, 8, 32, 32), "float32", "NCHW"),)
    made = export_tflite_variants(
        onnx_file, work, ("fp32", "int8_fast"), work / "log", spec, calibration, fast=FastTarget(HostTimer(1))
    )
    return made["int8_fast"]


def test_the_op_types_slower_in_int8_stay_float_and_the_file_is_faster(token_mixer_fast):
    choice = token_mixer_fast.fast_choice
    all_int8, written = choice.steps[0], choice.written
    assert all_int8.float_ops == () and choice.target == "host"
    # LayerNorm's int8 ops run in TFLite's reference kernels: measured 9.8x the float32 file
    assert all_int8.vs_fp32 > 2
    slowed = {t.op for t in choice.slower_in_int8}
    assert {"SQUARED_DIFFERENCE", "SUB"} <= slowed
    assert {"SQUARED_DIFFERENCE", "SUB"} <= set(written.float_ops) <= slowed
    assert written.vs_fp32 < all_int8.vs_fp32 / 2  # measured 0.77x against 9.75x
    assert written.sqnr_db >= choice.goal_sqnr_db
    record = json.loads(json.dumps(choice.to_dict()))
    assert record["float_ops"] == list(written.float_ops) and record["all_int8_vs_fp32"] == all_int8.vs_fp32


def test_the_written_file_runs_exactly_the_chosen_op_types_in_float(token_mixer_fast):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(token_mixer_fast.path))
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    float_ops = set(token_mixer_fast.fast_choice.written.float_ops)
    seen = set()
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        seen.add(op["op_name"])
        outputs = {np.dtype(dtype[i]).name for i in op["outputs"]}
        assert outputs == ({"float32"} if op["op_name"] in float_ops else {"int8"}), op["op_name"]
    assert "FULLY_CONNECTED" in seen - float_ops  # the matrix products stay int8


def _step(ops: tuple[str, ...], table: dict) -> tuple[FastStep, bytes]:
    vs_fp32, sqnr_db = table[frozenset(ops)]
    return FastStep(ops, vs_fp32, sqnr_db, 100 + len(ops)), ",".join(ops).encode()


def test_each_candidate_goes_back_to_int8_when_the_file_is_no_slower_without_it():
    table = {
        frozenset(): (3.0, 30.0),
        frozenset("ABC"): (0.8, 30.0),
        frozenset("AB"): (0.7, 30.0),  # C costs its quantize/dequantize pair more than it saves: back to int8
        frozenset("A"): (1.5, 30.0),  # B is needed
        frozenset("B"): (0.9, 30.0),
    }
    steps, chosen, flatbuffer = _search(lambda ops: _step(ops, table), ["A", "B", "C"], goal=21.0)
    assert [s.float_ops for s in steps] == [(), ("A", "B", "C"), ("A", "B"), ("A",), ("B",)]
    assert steps[chosen].float_ops == ("A", "B") and flatbuffer == b"A,B"


def test_a_file_below_the_floor_loses_to_a_slower_one_that_keeps_it():
    table = {frozenset(): (2.0, 25.0), frozenset("A"): (0.5, 18.0)}
    steps, chosen, flatbuffer = _search(lambda ops: _step(ops, table), ["A"], goal=21.0)
    assert chosen == 0 and steps[1].vs_fp32 == 0.5 and flatbuffer == b""
    table = {frozenset(): (2.0, 18.0), frozenset("A"): (0.5, 22.0)}
    steps, chosen, _ = _search(lambda ops: _step(ops, table), ["A"], goal=21.0)
    assert steps[chosen].float_ops == ("A",)


def test_a_file_below_the_floor_is_pruned_until_one_reaches_it():
    table = {
        frozenset(): (2.0, 21.5),
        frozenset("AB"): (0.6, 20.5),  # the fastest, but below the goal
        frozenset("A"): (0.7, 21.2),  # B back in int8 reaches it
    }
    steps, chosen, flatbuffer = _search(lambda ops: _step(ops, table), ["A", "B"], goal=21.0)
    assert [s.float_ops for s in steps] == [(), ("A", "B"), ("A",)]
    assert steps[chosen].float_ops == ("A",) and flatbuffer == b"A"


def test_no_candidate_means_one_file_timed():
    steps, chosen, _ = _search(lambda ops: _step(ops, {frozenset(): (0.4, 30.0)}), [], goal=21.0)
    assert len(steps) == 1 and chosen == 0


def test_int8_fast_without_a_target_says_which_setting(tmp_path):
    with pytest.raises(ExportError, match=r"\[export\] int8_target"):
        write_fast(tmp_path, b"", (), tmp_path / "out.tflite", FastTarget(None), tmp_path / "log")
    assert not (tmp_path / "out.tflite").exists()


@pytest.mark.parametrize(
    ("event", "op"),
    [
        ("Convolution (NHWC, QC8) IGEMM", "CONV_2D"),
        ("Convolution (NHWC, F32) DWConv", "DEPTHWISE_CONV_2D"),
        ("Fully Connected (NC, QS8, QC8W) GEMM", "FULLY_CONNECTED"),
        ("Batch Matrix Multiply (NC, F32) GEMM", "BATCH_MATMUL"),
        ("Squared Difference (ND)", "SQUARED_DIFFERENCE"),
        ("Reciprocal Square Root (NC)", "RSQRT"),
        ("Sigmoid (NC)", "LOGISTIC"),
        ("Mean (ND) Reduce2", "MEAN"),
        ("SOFTMAX", "SOFTMAX"),  # a TFLite kernel's own event
        ("Delegate/Subtract (ND)", "SUB"),  # benchmark_model's prefix
        ("Invalid Unary Op", None),  # XNNPACK names no operator
        ("Convert (NC)", None),  # QUANTIZE or DEQUANTIZE
        ("Static Reshape (NC)", None),
    ],
)
def test_profiler_events_name_their_tflite_op_type(event, op):
    assert builtin_op(event) == op


def test_events_of_one_op_type_add_up_and_the_rest_stay_by_name():
    known, unknown = by_builtin_op([("Add (ND)", 0.5), ("ADD", 0.25), ("Copy (NC, X8)", 0.1)])
    assert known == {"ADD": 0.75} and unknown == {"Copy (NC, X8)": 0.1}
