"""Magnitude pruning: the smallest weights zeroed, masks made permanent (channel pruning: test_channel_pruning.py)."""

from __future__ import annotations

import pytest

from edgepipe.models.pruning import count_parameters, finalize_magnitude, magnitude_prune, sparsity
from edgepipe.models.zoo import get_model


def test_magnitude_pruning_zeroes_the_smallest_weights_and_is_made_permanent():
    module = get_model("cnn_digits").build()
    smallest = module[8].weight.abs().min().item()
    magnitude_prune(module, 0.6)
    assert sparsity(module) == pytest.approx(0.6, abs=0.001)
    finalize_magnitude(module)
    assert not any(k.endswith(("_orig", "_mask")) for k in module.state_dict())
    assert module[8].weight.abs().min().item() == 0 <= smallest
    assert count_parameters(module) == 38378, "unstructured pruning keeps every tensor's shape"
