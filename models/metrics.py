"""Task metrics computed from model outputs and labels."""

from __future__ import annotations

import numpy as np


def classification(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy of the arg-max class."""
    predicted = np.asarray(logits).reshape(len(labels), -1).argmax(axis=1)
    return {"accuracy": float((predicted == np.asarray(labels)).mean())}


def binary(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the arg-max; ROC AUC from the positive-class probability."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score  # 2 s to import: only here

    logits = np.asarray(logits, dtype=np.float64).reshape(len(labels), 2)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probability = shifted[:, 1] / shifted.sum(axis=1)
    predicted = logits.argmax(axis=1)
    return {
        "accuracy": float((predicted == labels).mean()),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, probability)),
    }


def psnr(outputs: np.ndarray, targets: np.ndarray, peak: float = 1.0) -> dict[str, float]:
    """Peak signal-to-noise ratio in dB over the whole set, for images in [0, peak]."""
    mse = float(np.mean((np.asarray(outputs, np.float64).reshape(targets.shape) - targets) ** 2))
    return {"psnr_db": float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)}
