"""cnn_digits: a small CNN on scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

from torch import nn


def build(width: float = 1.0) -> nn.Module:
    """Two conv blocks and a linear head, about 38k parameters at width 1; width scales every hidden layer."""
    c1, c2, hidden = (max(2, round(n * width)) for n in (16, 32, 64))
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 4 * 4, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )
