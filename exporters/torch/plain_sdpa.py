"""scaled_dot_product_attention traced as its plain ops, for the programs torch.onnx cannot decompose.

torch.export keeps F.scaled_dot_product_attention as one op. When torch.onnx decomposes the program,
the attention's decomposition and the reshape that joins its heads (`out.transpose(1, 2).reshape(...)`)
disagree on the output's memory layout: the reshape becomes a view that the decomposed attention's
output does not allow, and the export fails ("Cannot view a tensor with shape ..."). It happened with
a relative-position bias gathered from a table as the mask: timm's MaxViT (maxvit_pico_rw_256,
maxvit_rmlp_pico_rw_256), which litert-torch converts. Traced as matmul, softmax and matmul from the
start, the reshape is recorded as the copy it is eagerly. torch.onnx also refuses a fused attention
over more than four dimensions ("only 4D query, key, and value are supported"): timm's NesT attends
within blocks, [batch, heads, blocks, tokens, dim]; traced plain, the matmuls take any batch dimensions.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

# What torch.onnx says when it cannot convert a fused attention, and why
ATTENTION_FAILURES = {
    "Cannot view a tensor": "its decomposition left a view its output does not allow",
    "only 4D query, key, and value are supported": "it takes only 4-D query, key and value",
}


def attention_failure(exc: BaseException) -> str | None:
    """Why torch.onnx could not convert the program's fused attention, when that is what an ONNX export
    failed on (the cause chain is read); else None."""
    while exc is not None:
        for said, why in ATTENTION_FAILURES.items():
            if said in str(exc):
                return why
        exc = exc.__cause__
    return None


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
