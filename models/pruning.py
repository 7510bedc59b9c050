"""Unstructured pruning: global magnitude masks, made permanent after the fine-tune (channels: channel_pruning.py)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune


def prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """(layer, "weight") of every convolution and linear layer."""
    return [(m, "weight") for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def count_parameters(module: nn.Module) -> int:
    """Every parameter element, zero or not."""
    return sum(p.numel() for p in module.parameters())


def sparsity(module: nn.Module) -> float:
    """Fraction of conv and linear weights that are exactly zero."""
    weights = [getattr(m, name) for m, name in prunable_weights(module)]
    total = sum(w.numel() for w in weights)
    return float(sum((w == 0).sum() for w in weights)) / total if total else 0.0


def magnitude_prune(module: nn.Module, amount: float) -> None:
    """Zero the smallest `amount` of all conv and linear weights, ranked together (masks stay until finalize)."""
    prune.global_unstructured(prunable_weights(module), pruning_method=prune.L1Unstructured, amount=amount)


def finalize_magnitude(module: nn.Module) -> None:
    """Make the pruning masks permanent: plain weight tensors whose pruned entries are zero."""
    for layer, name in prunable_weights(module):
        if prune.is_pruned(layer):
            prune.remove(layer, name)
