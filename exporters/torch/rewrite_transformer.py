"""Attention and encoder layers rebuilt from ops that onnx2tf maps to TFLite builtins.

onnx2tf 1.29 fails on the graph torch.onnx writes for nn.TransformerEncoderLayer.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PlainMultiheadAttention(nn.Module):
    """nn.MultiheadAttention as matmul, softmax, reshape and transpose, same call and results.

    Holds the original Parameters (in_proj_*, out_proj) under their own names. Supports
    attn_mask and key_padding_mask (bool or additive float), is_causal, need_weights and
    unbatched input; add_bias_kv and add_zero_attn are refused when the module is built.
    """

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if mha.bias_k is not None or mha.add_zero_attn:
            raise NotImplementedError("MultiheadAttention with add_bias_kv or add_zero_attn has no rewrite")
        self.training = mha.training
        self.embed_dim, self.num_heads, self.head_dim = mha.embed_dim, mha.num_heads, mha.head_dim
        self.batch_first, self.dropout = mha.batch_first, mha.dropout
        # Fused in_proj_weight, or q/k/v_proj_weight when kdim/vdim differ; the others are None.
        for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias"):
            self.register_parameter(name, getattr(mha, name))
        self.out_proj = mha.out_proj

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """(attn_output, attn_weights or None), shaped as nn.MultiheadAttention returns them."""
        batched = query.dim() == 3
        if not batched:
            batch_dim = 0 if self.batch_first else 1
            query, key, value = (t.unsqueeze(batch_dim) for t in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        q, k, v = self._project(query, key, value)
        scores = torch.matmul(q * self.head_dim**-0.5, k)  # (N, H, L, S)
        if attn_mask is None and is_causal:
            length, source = scores.shape[-2:]
            attn_mask = torch.ones(length, source, dtype=torch.bool, device=scores.device).triu(1)
        scores = _masked(scores, attn_mask, key_padding_mask, self.num_heads)
        weights = torch.softmax(scores, dim=-1)
        if self.training and self.dropout:
            weights = F.dropout(weights, self.dropout)
        out = self.out_proj(self._merge_heads(torch.matmul(weights, v)))
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
        if not need_weights:
            return out, None
        weights = weights.mean(dim=1) if average_attn_weights else weights
        return out, weights if batched else weights.squeeze(0)

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q as (N, H, L, d), k as (N, H, d, S) ready for q @ k, v as (N, H, S, d)."""
        e = self.embed_dim
        if self.in_proj_weight is not None and query is key and key is value:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            weights = (
                (self.in_proj_weight[:e], self.in_proj_weight[e : 2 * e], self.in_proj_weight[2 * e :])
                if self.in_proj_weight is not None
                else (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
            )
            # Sliced, not chunked: onnx2tf 1.29 corrupts a 1-D constant fed to Split.
            biases = (
                (None,) * 3
                if self.in_proj_bias is None
                else (self.in_proj_bias[:e], self.in_proj_bias[e : 2 * e], self.in_proj_bias[2 * e :])
            )
            q, k, v = (F.linear(t, w, b) for t, w, b in zip((query, key, value), weights, biases))
        # (N, L, H, d) from batch-first input, (L, N, H, d) from sequence-first input.
        order = (0, 2, 1, 3) if self.batch_first else (1, 2, 0, 3)
        key_order = (0, 2, 3, 1) if self.batch_first else (1, 2, 3, 0)
        q, k, v = (t.reshape(*t.shape[:2], self.num_heads, self.head_dim) for t in (q, k, v))
        return q.permute(order), k.permute(key_order), v.permute(order)

    def _merge_heads(self, out: Tensor) -> Tensor:
        """(N, H, L, d) back to the input layout with heads side by side: (N, L, E) or (L, N, E)."""
        out = out.permute((0, 2, 1, 3) if self.batch_first else (2, 0, 1, 3))
        return out.reshape(*out.shape[:2], self.embed_dim)


def _masked(scores: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None, heads: int) -> Tensor:
    """Scores (N, H, L, S) with both masks applied: True or -inf hides a position."""
    batch, _, length, source = scores.shape
    if attn_mask is not None:
        mask = attn_mask if attn_mask.dim() == 2 else attn_mask.reshape(batch, heads, length, source)
        scores = _apply(scores, mask)
    if key_padding_mask is not None:
        scores = _apply(scores, key_padding_mask.reshape(batch, 1, 1, source))
    return scores


def _apply(scores: Tensor, mask: Tensor) -> Tensor:
    """A bool mask hides where True; a float mask is added, as PyTorch does."""
    if mask.dtype == torch.bool:
        return scores.masked_fill(mask, float("-inf"))
    return scores + mask


class PlainEncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer's slow path (post- or pre-norm) over PlainMultiheadAttention.

    Keeps the original's submodules and names, so its state_dict is the original's; the
    fused fast path that eval mode would otherwise take has no ONNX form onnx2tf handles.
    """

    def __init__(self, layer: nn.TransformerEncoderLayer, activation: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.training = layer.training
        self.self_attn = PlainMultiheadAttention(layer.self_attn)
        self.linear1, self.dropout, self.linear2 = layer.linear1, layer.dropout, layer.linear2
        self.norm_first = layer.norm_first
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.dropout1, self.dropout2 = layer.dropout1, layer.dropout2
        self.activation = activation

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """Same arguments and result as nn.TransformerEncoderLayer.forward."""
        x = src
        if self.norm_first:
            x = x + self._attend(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._feed_forward(self.norm2(x))
        x = self.norm1(x + self._attend(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._feed_forward(x))

    def _attend(self, x: Tensor, mask: Tensor | None, padding: Tensor | None, is_causal: bool) -> Tensor:
        out = self.self_attn(
            x, x, x, key_padding_mask=padding, need_weights=False, attn_mask=mask, is_causal=is_causal
        )[0]
        return self.dropout1(out)

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class PlainEncoder(nn.Module):
    """nn.TransformerEncoder as a plain loop over its layers, without the nested-tensor path."""

    def __init__(self, encoder: nn.TransformerEncoder) -> None:
        super().__init__()
        self.training = encoder.training
        self.layers, self.norm = encoder.layers, encoder.norm

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        """Same arguments and result as nn.TransformerEncoder.forward."""
        out = src
        for layer in self.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return out if self.norm is None else self.norm(out)
