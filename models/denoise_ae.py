"""denoise_ae: a convolutional denoising autoencoder on noisy digits, judged by PSNR."""

from __future__ import annotations

from torch import nn

from models.metrics import psnr
from models.registry import ModelSpec, register
from models.shared.specs import InputSpec
from models.synthetic import noisy_digits


def build() -> nn.Module:
    """8x8 -> 4x4 encoder, transposed-conv decoder back to 8x8, sigmoid output in [0, 1]."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 2, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 1, 3, padding=1),
        nn.Sigmoid(),
    )


register(
    ModelSpec(
        name="denoise_ae",
        description="convolutional denoising autoencoder (transposed conv) on noisy 8x8 digits; PSNR",
        task="regression",
        build=build,
        dataset=noisy_digits,
        inputs=(InputSpec("noisy", (1, 1, 8, 8), "float32", "NCHW"),),
        metric=psnr,
        primary_metric="psnr_db",
        train_defaults={"epochs": 60, "lr": 0.003, "batch_size": 64, "patience": 8},
    )
)
