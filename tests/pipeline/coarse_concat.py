"""A model whose post-training int8 loses measurably, for QAT's test: a ReLU layer's features are
concatenated with a raw-scale input, the digit's ink (up to 640). TFLite holds a concatenation's inputs
on its output's grid, so the int8 file rounds those features in steps of 640 / 255 = 2.5."""

import torch
from torch import nn


class PixelsAndInk(nn.Module):
    """pixels (64, in [0, 1]) -> 32 ReLU features; with the ink beside them -> 10 classes."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.hidden = nn.Linear(64, hidden)
        self.head = nn.Linear(hidden + 1, 10)

    def forward(self, pixels, ink):
        return self.head(torch.cat([torch.relu(self.hidden(pixels)), ink], 1))


def build():
    return PixelsAndInk(), (torch.zeros(1, 64), torch.zeros(1, 1))
