"""A deterministic classification training loop with early stopping on validation loss."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.registry import DatasetSplits


@dataclass(frozen=True)
class TrainSettings:
    """Knobs of the training loop; the pipeline fills them from the job's TOML."""

    epochs: int = 40
    lr: float = 0.003
    batch_size: int = 64
    weight_decay: float = 0.0
    patience: int = 8
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    """What training did: epochs run, the best epoch kept and its validation loss."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    seconds: float


def train_classifier(model: nn.Module, data: DatasetSplits, settings: TrainSettings) -> TrainResult:
    """Train with Adam and cross-entropy; keep the weights of the best validation epoch."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_val, y_val = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for batch in order.split(settings.batch_size):
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val), y_val))
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(epoch, best_epoch, best_loss, time.perf_counter() - start)


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Eval-mode forward over an array in batches, as numpy."""
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(model(torch.from_numpy(x[i : i + batch_size])).numpy())
    return np.concatenate(outs)
