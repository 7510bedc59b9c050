"""Distillation: the loss mixes softened teacher outputs with labels; a narrow student learns from a teacher."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgepipe.models.distillation import distill, distillation_loss, narrower
from edgepipe.models.pruning import count_parameters
from edgepipe.models.shared.errors import ConfigError
from edgepipe.models.training import TrainSettings, predict
from edgepipe.models.zoo import get_model


def test_loss_is_the_label_loss_plus_zero_when_the_student_is_the_teacher():
    teacher = get_model("cnn_digits").build().eval()
    student = copy.deepcopy(teacher)
    x = [torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))]
    y = torch.arange(8) % 10
    out = student(*x)
    labels_only = nn.functional.cross_entropy(out, y)
    assert distillation_loss(teacher, "classification", 4.0, 1.0)(out, y, x).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(teacher, "classification", 4.0, 0.0)(out, y, x).item() == pytest.approx(labels_only.item())
    mixed = distillation_loss(teacher, "classification", 4.0, 0.5)(out, y, x)
    assert mixed.item() == pytest.approx(0.5 * labels_only.item(), rel=1e-5)


def test_soft_loss_grows_with_disagreement_and_is_scaled_by_t_squared():
    teacher = get_model("cnn_digits").build().eval()
    x = [torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))]
    y = torch.zeros(8, dtype=torch.long)
    other = teacher(*x).detach() + torch.randn(8, 10, generator=torch.Generator().manual_seed(2))
    t1 = distillation_loss(teacher, "classification", 1.0, 1.0)(other, y, x).item()
    t4 = distillation_loss(teacher, "classification", 4.0, 1.0)(other, y, x).item()
    assert t1 > 0 and t4 > 0
    # Softer targets shrink the KL term by about T^2; the T^2 factor restores its scale.
    assert 0.2 < t4 / t1 < 5


def test_a_narrow_student_learns_from_the_teacher():
    spec = get_model("cnn_digits")
    data = spec.dataset(0)
    torch.manual_seed(0)
    teacher = spec.build()
    from edgepipe.models.training import train

    settings = TrainSettings(epochs=8, lr=0.003, batch_size=64, seed=0)
    train(teacher, data, settings, spec.task, spec.input_names)
    student = narrower(spec, 0.5)
    assert count_parameters(student) <= count_parameters(teacher) / 2
    result = distill(student, teacher, spec, data, settings, 4.0, 0.7)
    accuracy = spec.metric(predict(student, data.x_test, spec.input_names), data.y_test)["accuracy"]
    assert result.epochs_run >= 1 and accuracy > 0.9


def test_models_without_a_width_ask_for_a_student_factory():
    with pytest.raises(ConfigError, match="student = 'pkg.module:factory'"):
        narrower(get_model("mlp_tabular"), 0.5)
