"""lstm_digits and gru_digits: digits read row by row as an 8-step sequence."""

from __future__ import annotations

import torch
from torch import nn


class RowReader(nn.Module):
    """A recurrent layer over the 8 rows, classifying from the last step's hidden state."""

    def __init__(self, cell: type[nn.RNNBase], hidden: int = 64):
        super().__init__()
        self.rnn = cell(input_size=8, hidden_size=hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x)[0]
        return self.head(out[:, -1])


def build_lstm() -> RowReader:
    return RowReader(nn.LSTM)


def build_gru() -> RowReader:
    return RowReader(nn.GRU)
