"""lstm_digits and gru_digits: digits read row by row as an 8-step sequence."""

from __future__ import annotations

import torch
from torch import nn

from models.datasets import digits_rows
from models.metrics import classification
from models.registry import ModelSpec, register
from models.shared.specs import InputSpec


class RowReader(nn.Module):
    """A recurrent layer over the 8 rows, classifying from the last step's hidden state."""

    def __init__(self, cell: type[nn.RNNBase], hidden: int = 64):
        super().__init__()
        self.rnn = cell(input_size=8, hidden_size=hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x)[0]
        return self.head(out[:, -1])


for _name, _cell in (("lstm_digits", nn.LSTM), ("gru_digits", nn.GRU)):
    register(
        ModelSpec(
            name=_name,
            description=f"{_cell.__name__} over the digits' 8 rows as an 8-step sequence",
            task="classification",
            build=lambda cell=_cell: RowReader(cell),
            dataset=digits_rows,
            inputs=(InputSpec("x", (1, 8, 8), "float32", "NTC"),),
            metric=classification,
            primary_metric="accuracy",
            train_defaults={"epochs": 60, "lr": 0.005, "batch_size": 64, "patience": 10, "grad_clip_norm": 1.0},
        )
    )
