"""Pruning on real modules: which channels are coupled, that removal keeps the function, and magnitude masks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgepipe.models.pruning import (
    channel_groups,
    count_parameters,
    finalize_magnitude,
    magnitude_prune,
    prune_channels,
    resize_to,
    sparsity,
)
from edgepipe.models.zoo import get_model

X = (torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)),)


def _with_dead_channels(module: nn.Module) -> nn.Module:
    """Make the odd channels of every hidden layer exactly zero, so removing them changes nothing."""
    hidden = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]  # not the classifier
    with torch.no_grad():
        for layer in hidden:
            layer.weight[1::2] = 0
            layer.bias[1::2] = 0
        for norm in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            norm.bias[1::2] = 0
            norm.running_mean[1::2] = 0
    return module.eval()


def test_cnn_groups_follow_the_graph():
    groups = channel_groups(get_model("cnn_digits").build().eval(), X)
    prunable = [
        (g.channels, [type(c).__name__ for c, _ in g.consumers], [per for _, per in g.consumers])
        for g in groups
        if not g.frozen
    ]
    # conv1 -> conv2; conv2 -> (pool, flatten: 16 features per channel) -> fc1; fc1 -> fc2
    assert prunable == [(16, ["Conv2d"], [1]), (32, ["Linear"], [16]), (64, ["Linear"], [1])]
    frozen = {g.frozen for g in groups if g.frozen}
    assert frozen == {"model input", "the model output"}


def test_removing_dead_channels_keeps_the_outputs_exactly():
    module = _with_dead_channels(get_model("cnn_digits").build())
    before = module(*X)
    records = prune_channels(module, X, 0.5)
    assert [(r["channels"], r["kept"]) for r in records] == [(16, 8), (32, 16), (64, 32)]
    assert count_parameters(module) == 9850  # from 38,378
    torch.testing.assert_close(module(*X), before, rtol=0, atol=1e-5)
    assert module[0].weight.abs().flatten(1).sum(1).min() > 0, "the live channels were kept"


def test_squeeze_excitation_couples_the_gate_with_its_input():
    module = get_model("mobilenet_digits").build().eval()
    names = {m: n for n, m in module.named_modules()}
    coupled = [sorted(names[p] for p in g.producers) for g in channel_groups(module, X) if len(g.producers) > 1]
    # The SE gate multiplies the block's input channel by channel: its expand conv writes the same channels.
    assert ["0", "3.3.expand"] in coupled and ["3.4", "4.3.expand"] in coupled
    pruned = copy.deepcopy(module)
    prune_channels(pruned, X, 0.5)
    assert count_parameters(pruned) < 0.35 * count_parameters(module)
    assert pruned(*X).shape == (6, 10)


def test_residual_add_prunes_both_branches_alike():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.body, self.head = (
                nn.Conv2d(1, 8, 3, padding=1),
                nn.Conv2d(8, 8, 3, padding=1),
                nn.Linear(8, 3),
            )

        def forward(self, x):
            y = torch.relu(self.stem(x))
            y = y + torch.relu(self.body(y))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))

    module = Block().eval()
    group = next(g for g in channel_groups(module, X) if len(g.producers) == 2)
    assert set(group.producers) == {module.stem, module.body}
    prune_channels(module, X, 0.5)
    assert module.stem.out_channels == module.body.out_channels == module.body.in_channels == 4
    assert module.head.in_features == 4 and module(*X).shape == (6, 3)


def test_channels_reaching_an_unknown_op_are_left_alone():
    class Reshaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8 * 64, 2)

        def forward(self, x):
            return self.head(self.conv(x).view(x.shape[0], -1))

    module = Reshaped().eval()
    assert prune_channels(module, X, 0.5) == []
    assert module.conv.out_channels == 8


def test_resize_to_rebuilds_a_pruned_model_from_its_state_dict():
    spec = get_model("mobilenet_digits")
    pruned = spec.build().eval()
    prune_channels(pruned, X, 0.5)
    rebuilt = resize_to(spec.build(), pruned.state_dict()).eval()
    torch.testing.assert_close(rebuilt(*X), pruned(*X))


def test_magnitude_pruning_zeroes_the_smallest_weights_and_is_made_permanent():
    module = get_model("cnn_digits").build()
    smallest = module[8].weight.abs().min().item()
    magnitude_prune(module, 0.6)
    assert sparsity(module) == pytest.approx(0.6, abs=0.001)
    finalize_magnitude(module)
    assert not any(k.endswith(("_orig", "_mask")) for k in module.state_dict())
    assert module[8].weight.abs().min().item() == 0 <= smallest
    assert count_parameters(module) == 38378, "unstructured pruning keeps every tensor's shape"
