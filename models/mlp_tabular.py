"""mlp_tabular: an MLP on scikit-learn's bundled breast-cancer set (binary)."""

from __future__ import annotations

from torch import nn


def build() -> nn.Module:
    """30 standardised features -> 2 class logits."""
    return nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))
