"""Knowledge distillation: a smaller student learns from the teacher's softened outputs and the labels."""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from edgepipe.models.registry import DatasetSplits, ModelSpec
from edgepipe.models.shared.errors import ConfigError
from edgepipe.models.training import Criterion, TrainResult, TrainSettings, train_as


def narrower(spec: ModelSpec, width: float) -> nn.Module:
    """The zoo model built with its channels scaled by width; an error for models without a width."""
    if "width" not in inspect.signature(spec.build).parameters:
        scalable = "cnn_digits, mobilenet_digits"
        raise ConfigError(
            f"compress.student_width: zoo model {spec.name} has no width setting ({scalable} do); "
            "give compress.student = 'pkg.module:factory' instead"
        )
    return spec.build(width=width)


def distillation_loss(
    teacher: nn.Module, task: str, temperature: float, alpha: float, hard_loss: Callable | None = None
) -> Criterion:
    """alpha x soft-target loss + (1 - alpha) x task loss.

    Classification: Hinton's KL divergence between softened distributions, scaled by T^2 so
    its gradients keep their size as T changes. Regression: mean squared error to the
    teacher's output.
    """
    teacher.eval()
    hard = hard_loss or (nn.MSELoss() if task == "regression" else nn.CrossEntropyLoss())

    def criterion(outputs: torch.Tensor, targets: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            soft_targets = teacher(*inputs)
        if not isinstance(outputs, torch.Tensor) or not isinstance(soft_targets, torch.Tensor):
            raise ConfigError("compress.distill: distillation needs a model with one output tensor")
        if task == "regression":
            soft = nn.functional.mse_loss(outputs, soft_targets)
        else:
            soft = (
                nn.functional.kl_div(
                    nn.functional.log_softmax(outputs / temperature, dim=-1),
                    nn.functional.log_softmax(soft_targets / temperature, dim=-1),
                    reduction="batchmean",
                    log_target=True,
                )
                * temperature**2
            )
        return alpha * soft + (1 - alpha) * hard(outputs, targets)

    return criterion


def distill(
    student: nn.Module,
    teacher: nn.Module,
    spec: ModelSpec,
    data: DatasetSplits,
    settings: TrainSettings,
    temperature: float,
    alpha: float,
) -> TrainResult:
    """Train the student on the teacher's softened outputs mixed with the labels."""
    criterion = distillation_loss(teacher, spec.task, temperature, alpha, getattr(spec, "loss", None))
    return train_as(student, data, settings, spec, criterion)
