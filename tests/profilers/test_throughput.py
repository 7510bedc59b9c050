"""Throughput sweeps over batch sizes and thread counts on real runtimes and a tiny CNN."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgepipe.exporters.convert import export_tflite
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.profilers.isolation import in_child
from edgepipe.profilers.throughput import ThroughputPoint, throughput_sweep

BATCHES = (1, 4, 16)
SECONDS = 0.05  # behaviour, not speed, is under test: the shortest honest measured phase will do
THREADS = tuple(range(1, (os.cpu_count() or 1) + 1))
SAMPLE = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)  # NCHW, one sample
SAMPLE_NHWC = SAMPLE.transpose(0, 2, 3, 1).copy()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()


class BakedBatchCNN(nn.Module):
    """Flattens with reshape(1, -1), as many exported graphs do: batch 1 is part of the graph."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 64, 10)

    def forward(self, x):
        return self.head(torch.tanh(torch.relu(self.conv(x)).reshape(1, -1)))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """A CNN exported with a dynamic batch axis, and one whose graph fixes batch 1; ONNX, TFLite and .pt2."""
    work = tmp_path_factory.mktemp("throughput")
    log = work / "convert.log"
    dynamic_example = (torch.zeros(2, 1, 8, 8),)  # batch 1 would be specialised away
    dynamic = torch.export.export(
        _cnn(), dynamic_example, dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},)
    )
    fixed = torch.export.export(BakedBatchCNN().eval(), (torch.zeros(1, 1, 8, 8),))
    paths = {}
    for name, program, example in (("dynamic", dynamic, dynamic_example), ("fixed", fixed, (torch.zeros(1, 1, 8, 8),))):
        paths[f"{name}.onnx"] = export_onnx(program, example, ["x"], work / f"{name}.onnx", log).path
        paths[f"{name}.tflite"] = export_tflite(paths[f"{name}.onnx"], work / f"{name}.tflite", "fp32", log).path
        torch.export.save(program, str(work / f"{name}.pt2"))
        paths[f"{name}.pt2"] = work / f"{name}.pt2"
    return paths


def _grid(points: list[ThroughputPoint]) -> list[tuple[int, int]]:
    return [(p.batch, p.threads) for p in points]


def _assert_measured(point: ThroughputPoint) -> None:
    assert point.status == "measured" and point.reason is None
    assert point.inferences_per_second > 0 and point.p50_ms > 0


def test_tflite_dynamic_batch_measures_every_point_and_leaves_cwd_clean(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    points = throughput_sweep("tflite", models["dynamic.tflite"], {"x": SAMPLE_NHWC}, BATCHES, seconds=SECONDS)
    assert _grid(points) == [(b, t) for t in THREADS for b in BATCHES]
    for point in points:
        _assert_measured(point)
    assert set(points[0].to_dict()) == {"batch", "threads", "status", "inferences_per_second", "p50_ms", "reason"}
    assert list(tmp_path.iterdir()) == []


def test_tflite_baked_batch_is_unavailable_beyond_one_with_the_reason(models):
    points = throughput_sweep("tflite", models["fixed.tflite"], {"x": SAMPLE_NHWC}, BATCHES, (1,), SECONDS)
    _assert_measured(points[0])
    for point in points[1:]:
        assert point.status == "unavailable" and point.inferences_per_second is None and point.p50_ms is None
        assert point.reason and "\n" not in point.reason


def test_onnxruntime_fixed_batch_is_unavailable_beyond_one(models):
    points = throughput_sweep("onnxruntime", models["fixed.onnx"], {"x": SAMPLE}, BATCHES, seconds=SECONDS)
    assert _grid(points) == [(b, t) for t in THREADS for b in BATCHES]
    for point in points:
        if point.batch == 1:
            _assert_measured(point)
        else:
            assert point.to_dict() == {
                "batch": point.batch,
                "threads": point.threads,
                "status": "unavailable",
                "inferences_per_second": None,
                "p50_ms": None,
                "reason": "the ONNX graph fixes batch 1",
            }


def test_onnxruntime_dynamic_batch_measures_every_point(models):
    points = throughput_sweep("onnxruntime", models["dynamic.onnx"], {"x": SAMPLE}, BATCHES, (2, 1), SECONDS)
    assert _grid(points) == [(b, t) for t in (2, 1) for b in BATCHES]
    for point in points:
        _assert_measured(point)


def test_torch_batches_only_a_dynamic_program_and_keeps_torch_threads(models):
    before = torch.get_num_threads()
    dynamic = throughput_sweep("torch", models["dynamic.pt2"], {"x": SAMPLE}, (1, 4), (1,), SECONDS)
    fixed = throughput_sweep("torch", models["fixed.pt2"], {"x": SAMPLE}, (1, 4), (1,), SECONDS)
    assert torch.get_num_threads() == before
    for point in (*dynamic, fixed[0]):
        _assert_measured(point)
    assert fixed[1].status == "unavailable" and fixed[1].reason


def test_outputs_that_drop_the_batch_are_unavailable(tmp_path):
    # The graph accepts any batch but sums it away: it runs, yet it is not batched inference.
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1)],
        "sum_all",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
    )
    path = tmp_path / "sum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    points = throughput_sweep("onnxruntime", path, {"x": np.ones((1, 4), np.float32)}, (1, 4), (1,), SECONDS)
    _assert_measured(points[0])
    assert points[1].status == "unavailable" and points[1].reason == "outputs did not follow the batch"


def test_a_sweep_in_a_child_returns_the_same_structure(models):
    args = ("onnxruntime", models["fixed.onnx"], {"x": SAMPLE}, (1, 4))
    inside, isolated = throughput_sweep(*args, seconds=SECONDS), in_child(throughput_sweep, *args, seconds=SECONDS)
    assert all(isinstance(p, ThroughputPoint) for p in isolated)
    assert [(p.batch, p.threads, p.status, p.reason) for p in isolated] == [
        (p.batch, p.threads, p.status, p.reason) for p in inside
    ]
    assert all(p.inferences_per_second > 0 for p in isolated if p.status == "measured")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batches": (0, 4)}, "batches"),
        ({"threads": (1, -2)}, "threads"),
        ({"seconds": 0}, "seconds"),
        ({"feeds": {"x": np.zeros((2, 1, 8, 8), np.float32)}}, "one sample"),
        ({"runtime": "tensorrt"}, "unknown runtime"),
    ],
)
def test_bad_arguments_are_refused_before_loading(tmp_path, kwargs, message):
    call = {"runtime": "onnxruntime", "path": tmp_path / "absent.onnx", "feeds": {"x": SAMPLE}, **kwargs}
    with pytest.raises(ValueError, match=message):
        throughput_sweep(**call)
