"""A deterministic training loop: class weighting, clipping, LR schedules, augmentation, early stopping."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from edgepipe.models.registry import DEFAULT_THREADS, DatasetSplits, ModelSpec
from edgepipe.models.shared.progress import tick


@dataclass(frozen=True)
class TrainSettings:
    """Knobs of the training loop; the pipeline fills them from the model's defaults and the job's TOML."""

    epochs: int = 40
    lr: float = 0.003
    batch_size: int = 64
    weight_decay: float = 0.0
    patience: int = 8
    seed: int = 0
    class_weighting: bool = False
    grad_clip_norm: float | None = None
    lr_schedule: Literal["none", "step", "cosine"] = "none"
    lr_step_size: int = 10
    lr_gamma: float = 0.5
    augment: bool = False
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # adamw: decoupled weight decay; sgd: Nesterov momentum 0.9


@dataclass(frozen=True)
class TrainResult:
    """What training did: epochs run, the best epoch kept (0: the starting weights) and its validation loss."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    seconds: float


# (model outputs, targets, the inputs of the batch) -> loss; distillation also reads the inputs.
Criterion = Callable[[torch.Tensor, torch.Tensor, list[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class Learning:
    """What the training loop needs of any model (a zoo ModelSpec has the same attributes): its task
    (which picks the default loss), its input names, the inputs light augmentation may shift, and a
    loss of the user's own, (outputs, targets) -> scalar tensor."""

    task: str
    input_names: list[str]
    image_inputs: tuple[str, ...] = ()
    loss: Callable | None = None


def train(
    model: nn.Module,
    data: DatasetSplits,
    settings: TrainSettings,
    task: str,
    input_names: list[str],
    image_inputs: tuple[str, ...] = (),
    criterion: Criterion | None = None,
    loss: Callable | None = None,
    before_validation: Callable[[nn.Module], None] | None = None,
) -> TrainResult:
    """Train with Adam; stop when the validation task loss has not improved for `patience` epochs, keep the best.

    The starting weights are epoch 0 and compete too: a fine-tune whose every epoch judges worse than
    where it started hands the model back unchanged (best_epoch 0). criterion replaces the task loss
    during training (not for early stopping, which always judges the task itself); loss, the user's own,
    replaces the task loss everywhere; before_validation runs on the model before each judgement
    (QAT sets its int8 ranges there).
    """
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    x_train = [torch.from_numpy(data.x_train[n]) for n in input_names]
    x_val = [torch.from_numpy(data.x_val[n]) for n in input_names]
    y_train, y_val = torch.from_numpy(data.y_train), torch.from_numpy(data.y_val)
    loss_fn = loss or task_loss(task, data.y_train if settings.class_weighting else None)
    criterion = criterion or (lambda outputs, targets, inputs: loss_fn(outputs, targets))
    optimizer = _optimizer(model, settings)
    scheduler = _scheduler(optimizer, settings)
    augmented = [n in image_inputs and settings.augment for n in input_names]
    start, epoch = time.perf_counter(), 0
    best_loss = _validation_loss(model, x_val, y_val, loss_fn, before_validation)
    best_epoch, best_state = 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, settings.epochs + 1):
        model.train()
        for batch in torch.randperm(len(y_train), generator=generator).split(settings.batch_size):
            inputs = [shift(x[batch], generator) if aug else x[batch] for x, aug in zip(x_train, augmented)]
            optimizer.zero_grad()
            criterion(model(*inputs), y_train[batch], inputs).backward()
            if settings.grad_clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip_norm)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        val_loss = _validation_loss(model, x_val, y_val, loss_fn, before_validation)
        tick(f"epoch {epoch}/{settings.epochs}, validation loss {val_loss:.4f}")
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(epoch, best_epoch, best_loss, time.perf_counter() - start)


def _validation_loss(model: nn.Module, x_val, y_val, loss_fn, before_validation) -> float:
    """The task loss on the validation split, in eval mode, after before_validation when given."""
    model.eval()
    if before_validation is not None:
        before_validation(model)
    with torch.no_grad():
        return float(loss_fn(model(*x_val), y_val))


def train_as(
    model: nn.Module,
    data: DatasetSplits,
    settings: TrainSettings,
    how: Learning | ModelSpec,
    criterion=None,
    before_validation: Callable[[nn.Module], None] | None = None,
) -> TrainResult:
    """train() with what `how` says of the model: its task, input names, augmentable inputs and own loss."""
    loss = getattr(how, "loss", None)
    return train(model, data, settings, how.task, how.input_names, how.image_inputs, criterion, loss, before_validation)


@dataclass(frozen=True)
class Fitted:
    """A zoo model trained from its seed: the module, what training did, and its held-out metrics."""

    module: nn.Module
    result: TrainResult
    metrics: dict[str, float]


def fit(spec: ModelSpec, settings: TrainSettings, threads: int = DEFAULT_THREADS) -> Fitted:
    """Build, train and score one zoo model, seeded by settings.seed."""
    torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)
    module = spec.build()
    data = spec.dataset(settings.seed)
    result = train_as(module, data, settings, spec)
    metrics = spec.metric(predict(module, data.x_test, spec.input_names), data.y_test)
    return Fitted(module, result, metrics)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights from the training split's class counts, mean 1."""
    counts = np.bincount(labels).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (len(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def shift(images: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Light augmentation: move each NCHW image by up to max_shift pixels, filling with zeros."""
    n, _, h, w = images.shape
    padded = nn.functional.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, images.shape[1], h, w + 2 * max_shift)
    cropped = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, images.shape[1], h, w)
    return cropped.gather(3, cols)


def recalibrate_batchnorm(model: nn.Module, x: dict[str, np.ndarray], input_names: list[str], batch: int = 64) -> int:
    """Re-estimate every BatchNorm's running statistics over the samples (an exact average, not a moving
    one); the number of BatchNorm layers. After channels are cut, and after the short fine-tune that
    follows, the moving averages describe the network as it was a few hundred steps ago."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch seen
    for layer in model.modules():
        layer.train(layer in norms)  # dropout and the rest stay in eval mode
    with torch.no_grad():
        for i in range(0, len(x[input_names[0]]), batch):
            model(*[torch.from_numpy(x[n][i : i + batch]) for n in input_names])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return len(norms)


def predict(model: nn.Module, x: dict[str, np.ndarray], input_names: list[str], batch_size: int = 256) -> np.ndarray:
    """Eval-mode forward of a single-output model over arrays in batches, as numpy."""
    return predict_outputs(model, x, input_names, batch_size)[0]


def predict_outputs(
    model: nn.Module, x: dict[str, np.ndarray], input_names: list[str], batch_size: int = 256
) -> list[np.ndarray]:
    """Every output (tuples and lists flattened, in order) of an eval-mode forward in batches."""
    model.eval()
    n = len(x[input_names[0]])
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            out = model(*[torch.from_numpy(x[k][i : i + batch_size]) for k in input_names])
            chunks.append([t.numpy() for t in _flatten(out)])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def _flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _flatten(item)]


def task_loss(task: str, labels_for_weights: np.ndarray | None = None) -> nn.Module:
    """The task's default loss: MSE for regression, cross-entropy (class-weighted when labels are given)."""
    if task == "regression":
        return nn.MSELoss()
    weights = class_weights(labels_for_weights) if labels_for_weights is not None else None
    return nn.CrossEntropyLoss(weight=weights)


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    parameters, lr, decay = model.parameters(), settings.lr, settings.weight_decay
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)
    return torch.optim.Adam(parameters, lr=lr, weight_decay=decay)


def _scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings):
    if settings.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step_size, settings.lr_gamma)
    if settings.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    return None
