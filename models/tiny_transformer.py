"""tiny_transformer: two TransformerEncoderLayer blocks classifying digits read as 8 row tokens."""

from __future__ import annotations

import torch
from torch import nn


class RowTransformer(nn.Module):
    """Rows -> linear tokens + learned positions -> encoder (LayerNorm, MHA, GELU) -> mean pool -> classes."""

    def __init__(self, d_model: int = 32, heads: int = 4, layers: int = 2):
        super().__init__()
        self.project = nn.Linear(8, d_model)
        self.position = nn.Parameter(torch.zeros(1, 8, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=0.0, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(self.project(x) + self.position)
        return self.head(self.norm(tokens).mean(dim=1))
