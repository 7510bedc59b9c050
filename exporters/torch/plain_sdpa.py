"""scaled_dot_product_attention traced as its plain ops, for the programs torch.onnx cannot decompose.

torch.export keeps F.scaled_dot_product_attention as one op. When torch.onnx decomposes the program,
the attention's decomposition and the reshape that joins its heads (`out.transpose(1, 2).reshape(...)`)
disagree on the output's memory layout: the reshape becomes a view that the decomposed attention's
output does not allow, and the export fails ("Cannot view a tensor with shape ..."). It happened with
a relative-position bias gathered from a table as the mask: timm's MaxViT (maxvit_pico_rw_256,
maxvit_rmlp_pico_rw_256), which litert-torch converts. Traced as matmul, softmax and matmul from the
start, the reshape is recorded as the copy it is eagerly.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

VIEW_FAILURE = "Cannot view a tensor"


def fails_on_attention_layout(exc: BaseException) -> bool:
    """Whether an ONNX export failed on the view that the fused attention's layout let torch.export record."""
    while exc is not None:
        if VIEW_FAILURE in str(exc):
            return True
        exc = exc.__cause__
    return False


@contextlib.contextmanager
def attention_traced_plain():
    """Within: F.scaled_dot_product_attention computes softmax(q k^T * scale + mask) v in plain ops
    (dropout and grouped-query attention are left to the original, which inference export does not use)."""
    fused = F.scaled_dot_product_attention

    def plain(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if dropout_p or enable_gqa:
            return fused(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
        scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
        scores = (query * scale) @ key.transpose(-2, -1)
        if is_causal:
            allowed = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
        if attn_mask is not None:
            scores = (
                scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
            )
        return scores.softmax(-1) @ value

    F.scaled_dot_product_attention = plain
    try:
        yield
    finally:
        F.scaled_dot_product_attention = fused
