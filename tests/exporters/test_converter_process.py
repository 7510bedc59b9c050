"""The converter child: the same files as in-process, progress shown here, its errors and its death one line here."""

from __future__ import annotations

import logging
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepipe.exporters.convert import export_tflite_variants
from edgepipe.exporters.converter_process import ConverterProcess, in_a_child, worth_a_child
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.progress import LOG
from edgepipe.profilers.runtimes import open_tflite


def _matmul(path) -> None:
    weights = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["out"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(weights, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_the_child_writes_what_this_process_writes_and_its_progress_shows_here(tmp_path):
    _matmul(tmp_path / "mm.onnx")
    (tmp_path / "child").mkdir()
    (tmp_path / "here").mkdir()
    collect = _Collect()
    LOG.addHandler(collect)
    level = LOG.level
    LOG.setLevel(logging.INFO)
    try:
        with ConverterProcess(tmp_path / "child.log") as converter:
            converter.submit(
                onnx_path=tmp_path / "mm.onnx",
                out_dir=tmp_path / "child",
                variants=["fp32", "fp16"],
                log_path=tmp_path / "child.log",
            )
            theirs = converter.result()
    finally:
        LOG.removeHandler(collect)
        LOG.setLevel(level)
    ours = export_tflite_variants(tmp_path / "mm.onnx", tmp_path / "here", ["fp32", "fp16"], tmp_path / "here.log")
    assert any(m.startswith("export: onnx2tf translating") for m in collect.messages), collect.messages
    assert "export: writing model_fp16.tflite" in collect.messages, collect.messages
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    for variant in ("fp32", "fp16"):
        assert theirs[variant].op_histogram == ours[variant].op_histogram
        assert theirs[variant].inputs == ours[variant].inputs and theirs[variant].outputs == ours[variant].outputs
        got, expected = (open_tflite(r[variant].path).run({"x": x})["out"] for r in (theirs, ours))
        np.testing.assert_array_equal(got, expected)
    assert "loaded TensorFlow" in (tmp_path / "child.log").read_text()
    assert converter.peak_rss_mib > 0  # the child's own high-water mark, sent with its result


def test_an_error_in_the_child_is_raised_here_as_it_is(tmp_path):
    _matmul(tmp_path / "mm.onnx")
    with ConverterProcess(tmp_path / "c.log") as converter:
        converter.submit(
            onnx_path=tmp_path / "mm.onnx", out_dir=tmp_path, variants=["int9"], log_path=tmp_path / "c.log"
        )
        with pytest.raises(ExportError, match=r"mm.onnx: unknown TFLite variant\(s\) 'int9'; choose from fp32"):
            converter.result()


def test_a_child_that_dies_is_one_clear_error(tmp_path):
    _matmul(tmp_path / "mm.onnx")
    with ConverterProcess(tmp_path / "c.log") as converter:
        converter._child.kill()  # what an abort() inside a TFLite kernel does to it, as far as this side sees
        converter.submit(
            onnx_path=tmp_path / "mm.onnx", out_dir=tmp_path, variants=["fp32"], log_path=tmp_path / "c.log"
        )
        with pytest.raises(ExportError, match=r"converter process died \(signal SIGKILL\) without a result; .*c\.log"):
            converter.result()
    assert not (tmp_path / "mm_fp32.tflite").exists()


def test_a_child_only_where_it_can_run_beside_this_process(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worth_a_child()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a batch worker's share of one core
    assert not worth_a_child()
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert not worth_a_child()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setitem(sys.modules, "tensorflow", object())  # a warm process converts in-process
    assert not worth_a_child()


def test_the_converter_setting_overrides_the_automatic_choice(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", object())  # where "auto" converts in-process
    assert in_a_child("child") and not in_a_child("auto")
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert not in_a_child("in_process") and in_a_child("auto")  # where "auto" starts a child
