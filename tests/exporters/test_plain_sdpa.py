"""Fused attention whose output is transposed and reshaped (timm's MaxViT): torch.onnx cannot decompose the
program torch.export records, and the export stage exports it again with attention traced as plain ops."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from edgepipe.exporters.torch import export_onnx
from edgepipe.exporters.torch.plain_sdpa import attention_failure, attention_traced_plain
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.specs import InputSpec
from edgepipe.pipeline.stages.export import _export_torch


class WindowAttention(torch.nn.Module):
    """MaxViT's attention over an 8x8 window of channels-last tokens: heads split, a relative-position bias
    gathered from a table, fused attention, heads joined back by reshape."""

    def __init__(self, dim: int = 64, heads: int = 2):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
        self.table = torch.nn.Parameter(torch.randn(heads, 15 * 15))
        self.register_buffer("index", torch.randint(0, 15 * 15, (64 * 64,), generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        b, c = x.shape[0], x.shape[-1]
        q, k, v = self.qkv(x).view(b, -1, self.heads, 3 * c // self.heads).transpose(1, 2).chunk(3, dim=3)
        bias = self.table[:, self.index].view(1, self.heads, 64, 64).contiguous()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(x.shape[:-1] + (-1,)))


EXAMPLE = (torch.randn(4, 8, 8, 64),)


def test_torch_onnx_cannot_decompose_the_fused_program(tmp_path):
    torch.manual_seed(0)
    program = torch.export.export(WindowAttention().eval(), EXAMPLE)
    with pytest.raises(ExportError) as failed:
        export_onnx(program, EXAMPLE, ["x"], tmp_path / "m.onnx", tmp_path / "export.log")
    assert attention_failure(failed.value) == "its decomposition left a view its output does not allow"


def test_the_export_stage_exports_it_again_with_plain_attention(tmp_path):
    torch.manual_seed(0)
    module = WindowAttention().eval()
    ctx = SimpleNamespace(job=SimpleNamespace(export=SimpleNamespace(opset=18)))
    specs = (InputSpec("x", tuple(EXAMPLE[0].shape), "float32", "ND"),)
    _, rewrites = _export_torch(ctx, module, EXAMPLE, specs, tmp_path / "export.log", tmp_path / "m.onnx")
    assert any(r.startswith("scaled_dot_product_attention traced as matmul") for r in rewrites)
    x = torch.randn(4, 8, 8, 64)
    (got,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, module(x).numpy(), rtol=0, atol=1e-5)
    assert F.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"  # the fused one is back


@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal", "scale"])
def test_plain_attention_computes_what_the_fused_one_does(mask):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    given = {
        "none": {},
        "bool": {"attn_mask": torch.rand(5, 5, generator=g) > 0.3},
        "float": {"attn_mask": torch.randn(2, 1, 5, 5, generator=g)},
        "causal": {"is_causal": True},
        "scale": {"scale": 0.3},
    }[mask]
    fused = F.scaled_dot_product_attention(q, k, v, **given)
    with attention_traced_plain():
        plain = F.scaled_dot_product_attention(q, k, v, **given)
    torch.testing.assert_close(plain, fused, rtol=1e-5, atol=1e-6)


class BlockAttention(torch.nn.Module):
    """NesT's attention within blocks: query, key and value of [batch, heads, blocks, tokens, dim]."""

    def __init__(self, dim: int = 32, heads: int = 2):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)

    def forward(self, x):  # x: [batch, blocks, tokens, dim]
        b, t, n, c = x.shape
        qkv = self.qkv(x).reshape(b, t, n, 3, self.heads, c // self.heads).permute(3, 0, 4, 1, 2, 5)
        out = F.scaled_dot_product_attention(*qkv.unbind(0))
        return self.proj(out.permute(0, 2, 3, 4, 1).reshape(b, t, n, c))


def test_five_dimensional_attention_is_exported_plain(tmp_path):
    torch.manual_seed(0)
    module, example = BlockAttention().eval(), (torch.randn(1, 4, 16, 32),)
    with pytest.raises(ExportError) as failed:
        export_onnx(torch.export.export(module, example), example, ["x"], tmp_path / "f.onnx", tmp_path / "f.log")
    assert attention_failure(failed.value) == "it takes only 4-D query, key and value"
    assert "only 4D query, key, and value are supported" in (tmp_path / "f.log").read_text()  # the details
    ctx = SimpleNamespace(job=SimpleNamespace(export=SimpleNamespace(opset=18)))
    specs = (InputSpec("x", tuple(example[0].shape), "float32", "ND"),)
    _, rewrites = _export_torch(ctx, module, example, specs, tmp_path / "export.log", tmp_path / "m.onnx")
    assert any("only 4-D query, key and value" in r for r in rewrites)
    x = torch.randn(1, 4, 16, 32)
    (got,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, module(x).numpy(), rtol=0, atol=1e-5)
