"""denoise_ae: a convolutional denoising autoencoder on noisy digits, judged by PSNR."""

from __future__ import annotations

from torch import nn


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
