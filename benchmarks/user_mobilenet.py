"""A user's own model for the benchmarks: torchvision's mobilenet_v2 for 10 classes on digits upsampled to 3x32x32.

`user_mobilenet:build` is the factory edgepipe is given; `digits_32` and `train` are what the user did
before (their data and their training), kept apart from edgepipe's own code. Nothing is downloaded.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

SHAPE = (1, 3, 32, 32)


def build():
    """The factory: the untrained network and an example input (weights come from the job)."""
    import real_model_zoo

    real_model_zoo._declare_torchvision_ops()
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None, num_classes=10), torch.zeros(SHAPE)


def digits_32(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_eval, y_eval)): scikit-learn's digits, bilinear to 32x32, grey in 3 channels,
    scaled to [-1, 1]; a seeded, stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy((digits.images / 16.0).astype(np.float32))[:, None]
    x = nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x.numpy() * 2 - 1).astype(np.float32)
    y = digits.target.astype(np.int64)
    train_idx, eval_idx = train_test_split(np.arange(len(y)), test_size=0.25, random_state=seed, stratify=y)
    return (x[train_idx], y[train_idx]), (x[eval_idx], y[eval_idx])


def top1(module: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of an eval-mode module."""
    module.eval()
    with torch.no_grad():
        logits = torch.cat([module(torch.from_numpy(x[i : i + 256])) for i in range(0, len(x), 256)])
    return float((logits.argmax(1).numpy() == y).mean())


def train(module: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int = 0) -> float:
    """Plain training as a user writes it: AdamW, cross-entropy, cosine schedule, batches of 32, fixed epochs;
    seconds taken. (Adam at 1e-3 in batches of 64 left this network at 47 % after 30 epochs.)"""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        module.train()
        for batch in torch.randperm(len(ys), generator=generator).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(module(xs[batch]), ys[batch]).backward()
            optimizer.step()
        schedule.step()
    module.eval()
    return time.perf_counter() - start
