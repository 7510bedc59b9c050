"""audio_kws: keyword-spotting CNN over log-mel features of seeded synthetic audio."""

from __future__ import annotations

from torch import nn

from edgepipe.models.synthetic import AUDIO_CLASSES


def build() -> nn.Module:
    """Two conv blocks over (mel, time), global pooling and a linear head."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, len(AUDIO_CLASSES)),
    )
