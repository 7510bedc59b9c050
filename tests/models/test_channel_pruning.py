"""Channel pruning by dependency groups on each structure: shapes kept, channels removed, the right ones removed."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgepipe.models.channel_pruning import amount_for, count_macs_params, prune_channels
from edgepipe.models.shared.errors import ConfigError
from tests.models.pruning_structures import STRUCTURES

X = (torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)),)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_each_structure_loses_channels_and_keeps_its_output_shape(name):
    torch.manual_seed(0)
    module = STRUCTURES[name]().eval()
    outcome = prune_channels(module, X, 0.5)
    assert module(*X).shape == (4, 10)
    assert outcome.params[1] < 0.75 * outcome.params[0], outcome.to_dict()
    assert outcome.macs[1] < outcome.macs[0]
    assert module.head.out_features == 10 and "head" in outcome.kept_whole
    torch.export.export(module, X)  # what the compress stage saves


def test_what_torch_pruning_would_slice_wrongly_stays_whole_with_its_reason():
    shuffle = STRUCTURES["concat_shuffle"]().eval()
    kept = prune_channels(shuffle, X, 0.5).kept_whole
    assert kept["left.0"] == kept["right.2"] == "its channels pass a channel shuffle"
    assert shuffle.stem[0].out_channels == 8, "the chunked stem loses channels in both halves alike"
    multiplier = STRUCTURES["depthwise_multiplier"]().eval()
    kept = prune_channels(multiplier, X, 0.5).kept_whole
    assert kept["stem.0"] == "it feeds a depthwise convolution with a channel multiplier"
    assert multiplier.project[0].out_channels == 16


def test_attention_keeps_its_heads_and_reads_the_pruned_head_width():
    module = STRUCTURES["attention"]().eval()
    prune_channels(module, X, 0.5)
    assert module.num_heads == 4 and module.qkv.out_features == 3 * 4 * module.head_dim < 96


def _dead_channels(module: nn.Module, layers: list[nn.Conv2d]) -> nn.Module:
    """Make the odd output channels of these layers exactly zero."""
    with torch.no_grad():
        for layer in layers:
            layer.weight[1::2] = 0
            layer.bias[1::2] = 0
    return module.eval()


def test_the_channels_that_carry_nothing_are_the_ones_removed():
    # Taylor importance on a loss: a channel with no effect on the output has none on the loss either.
    module = STRUCTURES["concat_shuffle"]()
    module = _dead_channels(module, [module.wide[0]])
    before = module(*X)
    targets = torch.randint(0, 10, (4,), generator=torch.Generator().manual_seed(1))

    def gradients(m):
        nn.functional.cross_entropy(m(*X), targets).backward()

    prune_channels(module, X, 0.5, skip=("stem.0", "right.0"), gradients=gradients)  # only `wide` is pruned
    assert module.wide[0].out_channels == 16
    torch.testing.assert_close(module(*X), before, rtol=0, atol=1e-5)


def test_a_global_macs_target_is_met():
    module = STRUCTURES["residual"]().eval()
    total = count_macs_params(module, X[:1])[0]
    amount = amount_for(module, X[:1], "macs", 0.5)
    prune_channels(module, X[:1], amount)
    assert 0.35 < count_macs_params(module, X[:1])[0] / total <= 0.5


def test_skipped_layers_keep_their_channels_and_unknown_names_are_refused():
    module = STRUCTURES["grouped"]().eval()
    kept = prune_channels(copy.deepcopy(module), X, 0.5, skip=("stem.0",)).kept_whole
    assert kept["stem.0"] == "listed in prune_skip"
    with pytest.raises(ConfigError, match="no module named 'stem.9'"):
        prune_channels(module, X, 0.5, skip=("stem.9",))
