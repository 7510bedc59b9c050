"""Quantization-aware fine-tuning: fake int8 where TFLite holds int8 tensors, int8-grid weights afterwards."""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize

from edgepipe.models.qat import Int8Weight, fake_int8, int8_step, quantization_aware_finetune, without_fake_int8
from edgepipe.models.training import TrainSettings, predict, train
from edgepipe.models.zoo import get_model

X = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


class Block(nn.Module):
    """conv-BN-ReLU (rounded once, after the ReLU), a residual sum, a mean and a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.body = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.norm(self.conv(x)))
        y = y + self.body(y)
        return self.head(y.mean((2, 3)).flatten(1))


def _rounded_after(program) -> list[str]:
    """The op each activation rounding follows, in graph order."""
    graph_module = program.program
    found = []
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), FakeQuantize):
            source = node.args[0]
            found.append("input" if source.op == "placeholder" else getattr(source.target, "__name__", "?"))
    return found


def test_rounding_sits_where_tflite_holds_int8_tensors():
    program = fake_int8(Block().eval(), (X[:2],))
    after = [name.split(".")[0] for name in _rounded_after(program)]
    # input; the ReLU (conv and BatchNorm fold into it); body conv feeds the add only through it: rounded;
    # the sum; the mean; the linear output. Nothing after the flatten (same grid).
    assert after == ["input", "relu", "conv2d", "add", "mean", "linear"], after
    weights = [m for m in program.program.modules() if isinstance(m, Int8Weight)]
    assert len(weights) == 3


def test_fake_int8_changes_outputs_and_leaves_a_plain_program_with_grid_weights():
    torch.manual_seed(0)
    module = get_model("cnn_digits").build().eval()
    float_out = module(X)
    program = fake_int8(module, (X[:2],))
    program.train()
    program(X)  # the observers see the activation ranges
    program.eval()
    assert not torch.equal(program(X), float_out)
    plain = without_fake_int8(program)
    assert not any(isinstance(m, (FakeQuantize, Int8Weight)) for m in plain.modules())
    for name, weight in plain.program.named_parameters():
        if name.endswith("weight") and weight.dim() > 1:
            steps = weight / int8_step(weight).view(-1, *[1] * (weight.dim() - 1))
            assert (steps - steps.round()).abs().max() < 1e-3 and steps.abs().max() <= 127.001, name


def test_quantization_aware_finetune_keeps_a_trained_model_accurate():
    spec = get_model("cnn_digits")
    data = spec.dataset(0)
    torch.manual_seed(0)
    module = spec.build()
    train(module, data, TrainSettings(epochs=8, seed=0), spec.task, spec.input_names)
    examples = (torch.from_numpy(data.x_train["x"][:2]),)
    program, result = quantization_aware_finetune(module, examples, spec, data, TrainSettings(epochs=2, lr=3e-4))
    assert result.epochs_run == 2
    assert spec.metric(predict(program, data.x_test, spec.input_names), data.y_test)["accuracy"] > 0.9
