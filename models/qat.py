"""Quantization-aware fine-tuning: train through int8 rounding so post-training int8 conversion loses less."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize

from edgepipe.models.registry import DatasetSplits, ModelSpec
from edgepipe.models.training import TrainResult, TrainSettings, train

# Layers whose outputs TFLite's int8 kernels write as int8 tensors (after fusing BatchNorm and activations).
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Linear,
)


class Int8Weight(nn.Module):
    """Per-output-channel symmetric int8 rounding of a weight, as TFLite's int8 conv and linear kernels store it.

    The straight-through gradient of fake quantization lets the float weight learn where
    rounding costs least.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = int8_step(weight)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


def int8_step(weight: torch.Tensor) -> torch.Tensor:
    """Each output channel's int8 step: max |w| / 127."""
    return weight.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / 127


@contextlib.contextmanager
def fake_int8(module: nn.Module):
    """Inside: weights rounded per channel and activations per tensor to int8; on exit the rounded weights stay."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", Int8Weight())
    hooks = []
    for layer in (m for m in module.modules() if isinstance(m, _ACTIVATIONS)):
        quantizer = FakeQuantize(MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8)
        layer.add_module("int8_output", quantizer)
        hooks.append((layer, layer.register_forward_hook(lambda mod, args, out: mod.int8_output(out))))
    try:
        yield module
    finally:
        for layer, hook in hooks:
            hook.remove()
            del layer.int8_output
        for layer in layers:
            # The rounded weight is kept: the int8 converter then finds every weight on its grid.
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


def quantization_aware_finetune(
    module: nn.Module, spec: ModelSpec, data: DatasetSplits, settings: TrainSettings
) -> TrainResult:
    """Fine-tune the module under fake int8 quantization; it leaves with int8-grid weights and no hooks."""
    with fake_int8(module):
        return train(
            module, data, settings, spec.task, spec.input_names, spec.image_inputs, loss=getattr(spec, "loss", None)
        )
