"""Distillation: the loss mixes softened teacher outputs with labels; a narrow student learns from a teacher."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from edgepipe.models.distillation import distill, distillation_loss, narrower
from edgepipe.models.pruning import count_parameters
from edgepipe.models.shared.errors import ConfigError
from edgepipe.models.training import TrainSettings, predict, train
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


def test_soft_loss_grows_with_disagreement():
    teacher = get_model("cnn_digits").build().eval()
    x = [torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))]
    y = torch.zeros(8, dtype=torch.long)
    agreed = teacher(*x).detach()
    noise = torch.randn(8, 10, generator=torch.Generator().manual_seed(2))
    for temperature in (1.0, 4.0):
        loss = distillation_loss(teacher, "classification", temperature, 1.0)
        losses = [loss(agreed + scale * noise, y, x).item() for scale in (0.0, 0.5, 1.0, 2.0, 4.0)]
        assert losses[0] == pytest.approx(0.0, abs=1e-6) and losses == sorted(losses) and losses[1] > 0, losses


def test_a_narrow_student_learns_from_the_teacher():
    spec = get_model("cnn_digits")
    data = spec.dataset(0)
    torch.manual_seed(0)
    teacher = spec.build()
    settings = TrainSettings(epochs=8, lr=0.003, batch_size=64, seed=0)
    train(teacher, data, settings, spec.task, spec.input_names)
    student = narrower(spec, 0.5)
    assert count_parameters(student) <= count_parameters(teacher) / 2
    result = distill(student, teacher, spec, data, settings, 4.0, 0.7)
    accuracy = spec.metric(predict(student, data.x_test, spec.input_names), data.y_test)["accuracy"]
    assert result.epochs_run >= 1 and accuracy > 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_a_distilled_student_beats_the_same_student_on_labels_alone(seed):
    # 120 labelled samples: what the teacher's softened outputs add shows when labels are few
    spec = get_model("cnn_digits")
    data = spec.dataset(0)
    torch.manual_seed(0)
    teacher = spec.build()
    train(teacher, data, TrainSettings(epochs=8, lr=0.003, seed=0), spec.task, spec.input_names)
    few = replace(data, x_train={"x": data.x_train["x"][:120]}, y_train=data.y_train[:120])
    settings = TrainSettings(epochs=30, lr=0.003, batch_size=32, seed=seed, patience=30)
    torch.manual_seed(seed)
    on_labels = narrower(spec, 0.25)
    train(on_labels, few, settings, spec.task, spec.input_names)
    torch.manual_seed(seed)
    distilled = narrower(spec, 0.25)
    distill(distilled, teacher, spec, few, settings, 4.0, 0.9)

    def accuracy(module):
        return spec.metric(predict(module, data.x_test, spec.input_names), data.y_test)["accuracy"]

    assert accuracy(distilled) > accuracy(on_labels) + 0.02, (accuracy(distilled), accuracy(on_labels))


def test_models_without_a_width_ask_for_a_student_factory():
    with pytest.raises(ConfigError, match="student = 'pkg.module:factory'"):
        narrower(get_model("mlp_tabular"), 0.5)
