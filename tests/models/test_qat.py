"""Quantization-aware fine-tuning: fake int8 where TFLite holds int8 tensors, int8-grid weights afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize

from edgepipe.models.qat import (
    Int8Constant,
    Int8Weight,
    calibrate,
    fake_int8,
    int8_step,
    quantization_aware_finetune,
    without_fake_int8,
)
from edgepipe.models.registry import DatasetSplits
from edgepipe.models.training import Learning, TrainSettings, predict, train
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
    calibrate(program, {"x": X.numpy()}, ["x"])
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
    calibration = {"x": data.x_train["x"][:200]}
    program, result = quantization_aware_finetune(
        module, examples, spec, data, TrainSettings(epochs=2, lr=3e-4), calibration
    )
    assert result.epochs_run == 2
    assert spec.metric(predict(program, data.x_test, spec.input_names), data.y_test)["accuracy"] > 0.9


class Features(nn.Module):
    """ReLU features beside a raw input (a concatenation), a gain on them, and a gain folded into a layer."""

    def __init__(self):
        super().__init__()
        self.hidden, self.head = nn.Linear(4, 3), nn.Linear(4, 2)
        self.register_buffer("gain", torch.tensor([40.0, 1.0, 1.0]))
        self.register_buffer("scale", torch.tensor([0.5, 2.0]))

    def forward(self, x, raw):
        features = torch.relu(self.hidden(x)) * self.gain
        return self.head(torch.cat([features, raw], 1)) * self.scale


def _features_program():
    torch.manual_seed(0)
    return fake_int8(Features().eval(), (torch.rand(2, 4), torch.rand(2, 1)))


def test_rounding_follows_the_concatenation_grid_and_the_constants_tflite_keeps():
    program = _features_program()
    # x; the gain's product (the ReLU before it is the product's operand); the concatenation; the head
    # times its scale. Not `raw` nor the product on their own: they go only into the concatenation,
    # whose grid TFLite writes them on. Not the head's own output: TFLite folds the scale into it.
    assert [name.split(".")[0] for name in _rounded_after(program)] == ["input", "relu", "cat", "mul"]
    constants = [m for m in program.program.modules() if isinstance(m, Int8Constant)]
    assert len(constants) == 1  # the gain; the scale is folded into the head's weights
    plain = without_fake_int8(program)
    gain = plain.program.get_buffer("gain")
    assert torch.allclose(gain, torch.tensor([40.0, 6 * 40 / 255, 6 * 40 / 255]))  # 1.0 on the grid of [0, 40]
    assert torch.equal(plain.program.get_buffer("scale"), torch.tensor([0.5, 2.0]))


def test_calibrate_sets_the_min_and_max_over_every_sample_and_keeps_them():
    program = _features_program()
    rng = np.random.default_rng(0)
    samples = {"x": rng.random((200, 4), dtype=np.float32), "raw": rng.random((200, 1), dtype=np.float32)}
    samples["raw"][-1] = 9.0  # in the last batch of 64: a running average would not reach it
    calibrate(program, samples, ["x", "raw"])
    cat = next(m for n, m in program.program.named_modules() if isinstance(m, FakeQuantize) and n.endswith("_2"))
    assert float(cat.activation_post_process.max_val) >= 9.0
    assert float(cat.scale) == pytest.approx(float(cat.activation_post_process.max_val) / 255)
    before = {n: b.clone() for n, b in program.state_dict().items()}
    program.train()
    program(torch.rand(8, 4) * 100, torch.rand(8, 1) * 100)  # training batches leave the ranges alone
    assert all(torch.equal(before[n], b) for n, b in program.state_dict().items())


class Residual(nn.Module):
    """A sum whose first operand only the sum reads: TFLite runs it in that operand's buffer."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x):
        return torch.relu(self.a(x)) + self.b(x) * 4


def test_an_in_place_sums_first_operand_takes_the_range_of_the_sum_too():
    torch.manual_seed(0)
    program = fake_int8(Residual().eval(), (torch.rand(2, 3),))
    operand, result = program.in_place[0]
    calibrate(program, {"x": np.random.default_rng(0).random((50, 3), dtype=np.float32)}, ["x"])
    relu, total = (program.program.get_submodule(n).activation_post_process for n in (operand, result))
    assert float(total.min_val) < 0 and float(relu.min_val) == float(total.min_val)  # a ReLU's own starts at 0
    assert float(relu.max_val) >= float(total.max_val)


def test_qat_keeps_the_starting_weights_when_no_epoch_beats_them():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = DatasetSplits({"x": x[:200]}, y[:200], {"x": x[200:250]}, y[200:250], {"x": x[250:]}, y[250:])
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    train(module, data, TrainSettings(epochs=20, lr=0.05), "classification", ["x"])
    start = without_fake_int8(fake_int8(module, (torch.from_numpy(x[:2]),)))  # the start, on the int8 grid
    spec = Learning("classification", ["x"])
    wild = TrainSettings(epochs=3, lr=50.0, optimizer="sgd")  # every epoch is far worse than the start
    program, result = quantization_aware_finetune(module, (torch.from_numpy(x[:2]),), spec, data, wild, {"x": x[:100]})
    assert result.best_epoch == 0 and result.epochs_run == 3
    for (name, kept), (_, grid) in zip(program.state_dict().items(), start.state_dict().items()):
        assert torch.equal(kept, grid), name
