"""text_bilstm: Embedding + bidirectional LSTM classifying seeded synthetic token sequences."""

from __future__ import annotations

import torch
from torch import nn

from edgepipe.models.synthetic import TEXT_CLASSES, VOCAB


class BiLstmClassifier(nn.Module):
    """Token embeddings read both ways; the two final states classify the sequence."""

    def __init__(self, embed: int = 16, hidden: int = 32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embed)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, TEXT_CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.rnn(self.embed(tokens))[0]
        return self.head(out.mean(dim=1))
