"""multimodal: an image and a feature vector, two named inputs fused by concatenation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepipe.models.datasets import digits_images, split
from edgepipe.models.registry import DatasetSplits


class ImageAndProfile(nn.Module):
    """A conv branch over the image and an MLP branch over its row/column ink profile."""

    def __init__(self):
        super().__init__()
        self.image_branch = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 32),
            nn.ReLU(),
        )
        self.profile_branch = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(32 + 16, 10)

    def forward(self, image: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image_branch(image), self.profile_branch(profile)], dim=1))


def digits_with_profile(seed: int) -> DatasetSplits:
    """Digits as an image plus a 16-value profile (row means then column means, with seeded noise)."""
    x, y = digits_images()
    profile = np.concatenate([x[:, 0].mean(axis=2), x[:, 0].mean(axis=1)], axis=1)
    profile += np.random.default_rng(4000 + seed).normal(0, 0.02, profile.shape)
    return split({"image": x, "profile": profile.astype(np.float32)}, y, seed)
