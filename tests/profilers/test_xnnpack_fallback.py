"""A valid int8 model that XNNPACK refuses still runs, on TFLite's built-in kernels, and says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.exporters.convert import export_tflite
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.specs import InputSpec
from edgepipe.profilers.harness import TimingSettings
from edgepipe.profilers.profile import profile_in_process
from edgepipe.profilers.runtimes import open_tflite


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """An int8 model with a layer that is silent on the calibration data.

    Its output scale collapses, so the requantization multiplier of the layer reading it
    exceeds what XNNPACK accepts (the same happened to a pruned squeeze-excitation block).
    """
    work = tmp_path_factory.mktemp("xnnpack")
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 1),
        nn.Flatten(),
        nn.Linear(4 * 64, 10),
    ).eval()
    with torch.no_grad():
        module[2].bias.fill_(-50.0)  # always negative: the ReLU after it outputs zeros
    example = (torch.zeros(1, 1, 8, 8),)
    onnx_file = export_onnx(torch.export.export(module, example), example, ["x"], work / "m.onnx", work / "log")
    calibration = {"x": np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)}
    spec = (InputSpec("x", (1, 1, 8, 8), "float32", "NCHW"),)
    return export_tflite(onnx_file.path, work / "m_int8.tflite", "int8", work / "log", spec, calibration).path


def test_refused_model_runs_on_builtin_kernels_with_the_reason(refused):
    session = open_tflite(refused)
    assert session.kernels == "builtin" and "XNNPACK" in session.note
    out = session.run({"x": np.random.default_rng(1).random((1, 8, 8, 1), dtype=np.float32)})["output_0"]
    assert out.shape == (1, 10) and np.isfinite(out).all()


def test_profile_records_which_kernels_ran(refused):
    result = profile_in_process(
        "tflite", refused, {"x": np.zeros((1, 8, 8, 1), np.int8)}, 1, TimingSettings(2, 0.0, 20, 0.0, 1.0)
    )
    assert result["kernels"] == "builtin" and "XNNPACK" in result["kernels_note"]
