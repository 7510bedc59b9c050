"""mlp_tabular: an MLP on scikit-learn's bundled breast-cancer set (binary)."""

from __future__ import annotations

from torch import nn

from models.datasets import breast_cancer
from models.metrics import binary
from models.registry import ModelSpec, register
from models.shared.specs import InputSpec


def build() -> nn.Module:
    """30 standardised features -> 2 class logits."""
    return nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))


register(
    ModelSpec(
        name="mlp_tabular",
        description="MLP on the bundled breast-cancer features (binary; precision/recall/F1/ROC AUC)",
        task="classification",
        build=build,
        dataset=breast_cancer,
        inputs=(InputSpec("features", (1, 30), "float32", "NC"),),
        metric=binary,
        primary_metric="accuracy",
        train_defaults={"epochs": 100, "lr": 0.003, "batch_size": 32, "patience": 15, "class_weighting": True},
    )
)
