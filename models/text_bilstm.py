"""text_bilstm: Embedding + bidirectional LSTM classifying seeded synthetic token sequences."""

from __future__ import annotations

import torch
from torch import nn

from models.metrics import classification
from models.registry import ModelSpec, register
from models.shared.specs import InputSpec
from models.synthetic import SEQ_LEN, TEXT_CLASSES, VOCAB, token_sequences


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


register(
    ModelSpec(
        name="text_bilstm",
        description="Embedding + bidirectional LSTM on seeded synthetic keyword sequences (4 classes)",
        task="classification",
        build=BiLstmClassifier,
        dataset=token_sequences,
        inputs=(InputSpec("tokens", (1, SEQ_LEN), "int64", "NT"),),
        metric=classification,
        primary_metric="accuracy",
        train_defaults={"epochs": 40, "lr": 0.005, "batch_size": 64, "patience": 8, "grad_clip_norm": 1.0},
    )
)
