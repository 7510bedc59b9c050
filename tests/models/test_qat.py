"""Quantization-aware fine-tuning: fake int8 while training, int8-grid weights and a plain module afterwards."""

from __future__ import annotations

import torch

from edgepipe.models.qat import fake_int8, int8_step, quantization_aware_finetune
from edgepipe.models.training import TrainSettings, predict
from edgepipe.models.zoo import get_model

X = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_fake_int8_rounds_inside_and_leaves_a_plain_module_with_grid_weights():
    torch.manual_seed(0)
    module = get_model("cnn_digits").build().eval()
    float_out = module(X)
    keys = set(module.state_dict())
    with fake_int8(module):
        module.train()
        module(X)  # the observers see the activation ranges
        module.eval()
        rounded_out = module(X)
    assert not torch.equal(rounded_out, float_out)
    assert set(module.state_dict()) == keys, "no parametrization or quantizer left behind"
    assert not any(m._forward_hooks for m in module.modules())
    for layer in (module[0], module[3], module[8], module[10]):
        steps = layer.weight / int8_step(layer.weight).view(-1, *[1] * (layer.weight.dim() - 1))
        assert (steps - steps.round()).abs().max() < 1e-3 and steps.abs().max() <= 127.001


def test_quantization_aware_finetune_keeps_a_trained_model_accurate():
    spec = get_model("cnn_digits")
    data = spec.dataset(0)
    torch.manual_seed(0)
    module = spec.build()
    from edgepipe.models.training import train

    train(module, data, TrainSettings(epochs=8, seed=0), spec.task, spec.input_names)
    result = quantization_aware_finetune(module, spec, data, TrainSettings(epochs=2, lr=3e-4, seed=0))
    assert result.epochs_run == 2
    assert spec.metric(predict(module, data.x_test, spec.input_names), data.y_test)["accuracy"] > 0.9
