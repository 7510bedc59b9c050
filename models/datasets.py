"""Datasets bundled with scikit-learn, split with a fixed seed; nothing is downloaded."""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from models.registry import DatasetSplits


def split(x: np.ndarray, y: np.ndarray, seed: int, val: float = 0.15, test: float = 0.2) -> DatasetSplits:
    """Stratified train/val/test split, deterministic for a seed."""
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val / (1 - test), random_state=seed, stratify=y_rest
    )
    return DatasetSplits(x_train, y_train, x_val, y_val, x_test, y_test)


def digits_images(seed: int) -> DatasetSplits:
    """8x8 handwritten digits as float32 NCHW images scaled to [0, 1]."""
    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
    return split(x, data.target.astype(np.int64), seed)
