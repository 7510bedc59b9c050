"""Swap layers onnx2tf cannot convert (or converts only to Flex ops) for equivalent plain ones.

export_friendly() is the entry point: it walks a deep copy of a module and replaces
nn.LSTM, nn.GRU, nn.MultiheadAttention and nn.TransformerEncoder(Layer) by the modules of
rewrite_rnn and rewrite_transformer, which trace to TFLite builtins only.
"""

from __future__ import annotations

import copy
from typing import Callable

from torch import nn

from edgepipe.exporters.torch.rewrite_rnn import UnrolledGRU, UnrolledLSTM
from edgepipe.exporters.torch.rewrite_transformer import PlainEncoder, PlainEncoderLayer, PlainMultiheadAttention

# A rewrite takes the module and where it sits ("'a.b'" or "the top level") and returns the
# replacement plus one description per change.
Rewrite = Callable[[nn.Module, str], tuple[nn.Module, list[str]]]


def export_friendly(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """A deep copy of module with every layer onnx2tf cannot convert to TFLite builtins
    replaced by a numerically equivalent one, and a description of each rewrite applied;
    the module itself when none needs it (a copy would hold a second set of its weights)."""
    notes: list[str] = []
    if not any(_rewrite_for(m) for m in module.modules()):
        return module, notes
    return _rewrite(copy.deepcopy(module), "", notes), notes


def _rewrite(module: nn.Module, path: str, notes: list[str]) -> nn.Module:
    """Replace module if a rewrite applies, then do the same for each child of the result."""
    rewrite = _rewrite_for(module)
    if rewrite is not None:
        module, changes = rewrite(module, f"'{path}'" if path else "the top level")
        notes.extend(changes)
    for name, child in list(module.named_children()):
        replacement = _rewrite(child, f"{path}.{name}" if path else name, notes)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


def _rewrite_for(module: nn.Module) -> Rewrite | None:
    """The rewrite for this module's type, if any.

    A subclass that overrides forward() is left alone: its behaviour is its own, and a
    replacement built from the base class would silently drop it.
    """
    rewrites: tuple[tuple[type[nn.Module], Rewrite], ...] = (
        (nn.LSTM, _lstm),
        (nn.GRU, _gru),
        (nn.TransformerEncoder, _encoder),
        (nn.TransformerEncoderLayer, _encoder_layer),
        (nn.MultiheadAttention, _attention),
    )
    for base, rewrite in rewrites:
        if isinstance(module, base) and type(module).forward is base.forward:
            return rewrite
    return None


def _lstm(lstm: nn.LSTM, where: str) -> tuple[nn.Module, list[str]]:
    extra = [f"proj {lstm.proj_size}"] if lstm.proj_size else []
    return UnrolledLSTM(lstm), [f"lstm: nn.LSTM({_rnn_shape(lstm, extra)}) at {where} unrolled per time step"]


def _gru(gru: nn.GRU, where: str) -> tuple[nn.Module, list[str]]:
    return UnrolledGRU(gru), [f"gru: nn.GRU({_rnn_shape(gru, [])}) at {where} unrolled per time step"]


def _rnn_shape(rnn: nn.RNNBase, extra: list[str]) -> str:
    """'8->16, 2 layers, bidirectional, batch_first' and the like."""
    parts = [f"{rnn.input_size}->{rnn.hidden_size}"]
    parts += [f"{rnn.num_layers} layers"] if rnn.num_layers > 1 else []
    parts += ["bidirectional"] if rnn.bidirectional else []
    parts += ["batch_first"] if rnn.batch_first else []
    parts += [] if rnn.bias else ["no bias"]
    return ", ".join(parts + extra)


def _attention(mha: nn.MultiheadAttention, where: str) -> tuple[nn.Module, list[str]]:
    return PlainMultiheadAttention(mha), [
        f"attention: nn.MultiheadAttention({mha.embed_dim}, {mha.num_heads} heads) at {where} "
        "as matmul/softmax/reshape/transpose"
    ]


def _encoder_layer(layer: nn.TransformerEncoderLayer, where: str) -> tuple[nn.Module, list[str]]:
    # Exact GELU (the string "gelu" is F.gelu) stays: exporters.onnx_fixes makes it TFLite's GELU.
    activation = layer.activation
    name = getattr(activation, "__name__", type(activation).__name__)
    attention = layer.self_attn
    kind = "pre-norm" if layer.norm_first else "post-norm"
    return PlainEncoderLayer(layer, activation), [
        f"encoder_layer: nn.TransformerEncoderLayer(d_model {attention.embed_dim}, {attention.num_heads} heads, "
        f"{name}, {kind}) at {where} with plain attention"
    ]


def _encoder(encoder: nn.TransformerEncoder, where: str) -> tuple[nn.Module, list[str]]:
    return PlainEncoder(encoder), [
        f"encoder: nn.TransformerEncoder at {where} as a plain loop over its {len(encoder.layers)} layers"
    ]
