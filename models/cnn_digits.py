"""cnn_digits: a small CNN on scikit-learn's bundled 8x8 digits."""
from __future__ import annotations

from torch import nn

from models.datasets import digits
from models.metrics import classification
from models.registry import ModelSpec, register
from models.specs import InputSpec


def build() -> nn.Module:
    """Two conv blocks and a linear head, about 38k parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


register(
    ModelSpec(
        name="cnn_digits",
        description="small CNN on the bundled 8x8 digits (10 classes)",
        task="classification",
        build=build,
        dataset=digits,
        inputs=(InputSpec("x", (1, 1, 8, 8), "float32", "NCHW"),),
        metric=classification,
        primary_metric="accuracy",
        train_defaults={"epochs": 40, "lr": 0.003, "batch_size": 64},
        image_inputs=("x",),
    )
)
