"""Small networks with each structure that channel pruning must follow (imported by tests and by user-style factories).

Every factory returns (module, example input) for 1x8x8 digit images and 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

EXAMPLE = (1, 1, 8, 8)


class Residual(nn.Module):
    """Two convolutions whose outputs are added: both lose the same channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        y = self.stem(x)
        y = y + self.body(y)
        return self.head(y.mean((2, 3)))


class ConcatShuffle(nn.Module):
    """ShuffleNet's unit: split in two, a branch each, concatenate, shuffle the channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.left = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.wide = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        left, right = self.stem(x).chunk(2, dim=1)
        y = torch.cat([self.left(left), self.right(right)], dim=1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(self.wide(y).mean((2, 3)))


class DepthwiseMultiplier(nn.Module):
    """A depthwise convolution that doubles its channels (groups == in_channels, out = 2 x in)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, groups=16), nn.BatchNorm2d(32), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(32, 32, 1), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.project(self.depthwise(self.stem(x))).mean((2, 3)))


class Grouped(nn.Module):
    """A grouped convolution (ResNeXt, RegNet) between two dense ones."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=4), nn.GroupNorm(4, 32), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(32, 32, 1), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.project(self.grouped(self.stem(x))).mean((2, 3)))


class Normed(nn.Module):
    """Rows of pixels as tokens through Linear, LayerNorm and GELU, with a residual."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.norm = nn.LayerNorm(32)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        tokens = self.embed(x[:, 0])
        tokens = tokens + self.mlp(self.norm(tokens))
        return self.head(tokens.mean(1))


class Attention(nn.Module):
    """A ViT-style block on rows of pixels: qkv attention split into heads, then an MLP."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.embed = nn.Linear(8, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        tokens = self.embed(x[:, 0])
        b, n, _ = tokens.shape
        qkv = self.qkv(self.norm1(tokens)).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attended = (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(-1) @ v
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))
        tokens = tokens + self.mlp(self.norm2(tokens))
        return self.head(tokens.mean(1))


STRUCTURES = {
    "residual": Residual,
    "concat_shuffle": ConcatShuffle,
    "depthwise_multiplier": DepthwiseMultiplier,
    "grouped": Grouped,
    "layernorm": Normed,
    "attention": Attention,
}


def factory(name: str):
    """A zero-argument factory for `pkg.module:name` references."""
    return lambda: (STRUCTURES[name](), torch.zeros(EXAMPLE))


residual = factory("residual")
concat_shuffle = factory("concat_shuffle")
depthwise_multiplier = factory("depthwise_multiplier")
grouped = factory("grouped")
layernorm = factory("layernorm")
attention = factory("attention")
