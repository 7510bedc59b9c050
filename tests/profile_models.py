"""Tiny real models for the profiling tests: a torch CNN as .pt2, ONNX and fp32/int8 TFLite, and
hand-built ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def small_cnn(work: Path) -> dict[str, Path]:
    """A 1x1x8x8 CNN exported to model.pt2, model.onnx, model_fp32.tflite and model_int8.tflite (one onnx2tf run)."""
    import torch
    from torch import nn

    from edgepipe.exporters.convert import export_tflite_variants
    from edgepipe.exporters.torch.to_onnx import export_onnx
    from edgepipe.models.shared.specs import InputSpec

    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()
    example = (torch.zeros(1, 1, 8, 8),)
    program = torch.export.export(module, example)
    torch.export.save(program, str(work / "model.pt2"))
    onnx_file = export_onnx(program, example, ["x"], work / "model.onnx", work / "log").path
    calibration = {"x": np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)}
    spec = (InputSpec("x", (1, 1, 8, 8), "float32", "NCHW"),)
    made = export_tflite_variants(onnx_file, work, ("fp32", "int8"), work / "log", spec, calibration)
    return {"pt2": work / "model.pt2", "onnx": onnx_file, "fp32": made["fp32"].path, "int8": made["int8"].path}


def onnx_graph(path: Path, x_shape: list, dtype: str = "float32") -> Path:
    """y = relu(x) * 2 as an ONNX file whose input x has x_shape (strings are open dimensions)."""
    import onnx
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}[dtype]
    two = helper.make_tensor("two", elem, [], [2])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, x_shape)],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def token_mixer():
    """A factory (module, example): 1x1 conv to 1024 tokens of 64 features, LayerNorm, a softmax gate, a
    classifier. Its LayerNorm and softmax have no int8 kernel in XNNPACK, so their int8 ops run in TFLite's
    reference kernels, slower than the float ones."""
    import torch
    from torch import nn

    class TokenMixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.norm = nn.Conv2d(8, 64, 1), nn.LayerNorm(64)
            self.gate, self.head = nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, x):
            tokens = self.norm(self.embed(x).flatten(2).transpose(1, 2))
            return self.head((torch.softmax(self.gate(tokens), dim=-1) * tokens).mean(1))

    torch.manual_seed(0)
    return TokenMixer().eval(), torch.zeros(1, 8, 32, 32)


def square_attention():
    """A factory (module, example): 16 tokens of 16 features attending to each other. Every MatMul's operands
    read the same under a transpose, so onnx2tf picks their layout by test inference against ONNX Runtime."""
    import torch
    from torch import nn

    class SquareAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(16, 16, 1)
            self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            tokens = self.embed(x).flatten(2).transpose(1, 2)
            weights = torch.softmax(self.q(tokens) @ self.k(tokens).transpose(1, 2), dim=-1)
            return (weights @ self.v(tokens)).transpose(1, 2).reshape(1, 16, 4, 4)

    torch.manual_seed(0)
    return SquareAttention().eval(), torch.randn(1, 16, 4, 4)
