"""audio_kws: keyword-spotting CNN over log-mel features of seeded synthetic audio."""

from __future__ import annotations

from torch import nn

from models.metrics import classification
from models.registry import ModelSpec, register
from models.shared.specs import InputSpec
from models.synthetic import AUDIO_CLASSES, N_MELS, keyword_audio


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


register(
    ModelSpec(
        name="audio_kws",
        description="keyword-spotting CNN on log-mel features of synthetic tones, chirps and noise (6 classes)",
        task="classification",
        build=build,
        dataset=keyword_audio,
        inputs=(InputSpec("features", (1, 1, N_MELS, 32), "float32", "NCHW"),),
        metric=classification,
        primary_metric="accuracy",
        train_defaults={
            "epochs": 40,
            "lr": 0.003,
            "batch_size": 32,
            "patience": 8,
            "lr_schedule": "step",
            "lr_step_size": 15,
        },
    )
)
