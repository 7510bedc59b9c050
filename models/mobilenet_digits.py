"""mobilenet_digits: depthwise-separable blocks with BatchNorm, ReLU6/Hardswish and squeeze-excitation."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck, hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = nn.functional.hardsigmoid(self.expand(nn.functional.relu(self.reduce(self.pool(x)))))
        return x * gate


def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 (ReLU6) -> squeeze-excite -> pointwise 1x1 (Hardswish)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(),
        SqueezeExcite(cin),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.Hardswish(),
    )


def build(width: float = 1.0) -> nn.Module:
    """Stem, three separable blocks, global pool and a linear head; width scales the channels."""
    c = [max(4, int(n * width)) for n in (16, 32, 64, 64)]
    return nn.Sequential(
        nn.Conv2d(1, c[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(c[0]),
        nn.Hardswish(),
        separable(c[0], c[1], 1),
        separable(c[1], c[2], 2),
        separable(c[2], c[3], 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c[3], 10),
    )
