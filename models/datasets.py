"""Datasets bundled with scikit-learn or made from seeds, split with a fixed seed; nothing is downloaded.

scikit-learn is imported where a dataset is read: it takes 2 s, which every export of a
user's own model would otherwise pay for the zoo's sake.
"""

from __future__ import annotations

import numpy as np

from edgepipe.models.registry import DatasetSplits


def split(
    x: dict[str, np.ndarray], y: np.ndarray, seed: int, val: float = 0.15, test: float = 0.2, stratify: bool = True
) -> DatasetSplits:
    """Train/val/test split of every input alike, stratified by label for classification."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    rest, test_idx = train_test_split(index, test_size=test, random_state=seed, stratify=y if stratify else None)
    train_idx, val_idx = train_test_split(
        rest, test_size=val / (1 - test), random_state=seed, stratify=y[rest] if stratify else None
    )
    take = lambda idx: {k: np.ascontiguousarray(v[idx]) for k, v in x.items()}  # noqa: E731
    return DatasetSplits(take(train_idx), y[train_idx], take(val_idx), y[val_idx], take(test_idx), y[test_idx])


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """8x8 handwritten digits as float32 NCHW images in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images.astype(np.float32) / 16.0)[:, None, :, :], data.target.astype(np.int64)


def digits(seed: int, name: str = "x") -> DatasetSplits:
    """The digits images under one input name."""
    x, y = digits_images()
    return split({name: x}, y, seed)


def digits_rows(seed: int) -> DatasetSplits:
    """Digits read row by row: an 8-step sequence of 8 pixel values (batch, time, features)."""
    x, y = digits_images()
    return split({"x": np.ascontiguousarray(x[:, 0])}, y, seed)


def breast_cancer(seed: int) -> DatasetSplits:
    """Breast-cancer features standardised with the training split's mean and std."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    s = split({"features": data.data.astype(np.float32)}, data.target.astype(np.int64), seed)
    mean, std = s.x_train["features"].mean(0), s.x_train["features"].std(0) + 1e-6
    norm = lambda x: {"features": ((x["features"] - mean) / std).astype(np.float32)}  # noqa: E731
    return DatasetSplits(norm(s.x_train), s.y_train, norm(s.x_val), s.y_val, norm(s.x_test), s.y_test)
