"""Conversion never touches the network, even for the input shape that makes onnx2tf download."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn


def _network_namespace_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-rn", "true"]).returncode == 0


@pytest.mark.skipif(not _network_namespace_available(), reason="needs unshare -rn (user + network namespaces)")
def test_three_channel_image_model_converts_without_network(tmp_path):
    # onnx2tf fetches a sample .npy for any model whose inputs are all 4-D with 3 channels.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    onnx_file = tmp_path / "rgb.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 16, 16),), str(onnx_file), input_names=["image"], dynamo=True, external_data=False
    )
    result = subprocess.run(
        [
            "unshare",
            "-rn",
            sys.executable,
            "-m",
            "pipeline",
            "export",
            str(onnx_file),
            "-o",
            str(tmp_path / "o"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    tflite = next(a for a in json.loads(result.stdout)["artifacts"] if a["format"] == "tflite")
    assert tflite["inputs"][0]["shape"] == [1, 16, 16, 3] and tflite["ledger"]["ok"]
