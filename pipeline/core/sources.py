"""One model source for every stage: a zoo model, a user's factory and an `.onnx` file answer the same questions.

What is the module, what are its inputs, what data does it learn from, with which loss, and how is
it judged. This is the one place that asks which kind of source a job names; stages ask the source.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgepipe.models.registry import DatasetSplits
from edgepipe.models.shared.errors import ConfigError, InputFileError, UserCodeError
from edgepipe.models.shared.specs import InputSpec
from edgepipe.pipeline.core.config import ImageSection
from edgepipe.pipeline.core.context import JobSettings, model_kind

# The settings model_source reads, whichever kind of model the job names (so that a stage missing one
# fails on a zoo model as on a factory): every stage that asks for the source declares them.
SOURCE_SETTINGS = (
    "job.model",
    "job.seed",
    "job.inputs",
    "job.weights",
    "train.data",
    "train.val_fraction",
    "train.loss",
    "validate.eval_data",
    "validate.metric",
    "export.images",
)


@dataclass(frozen=True)
class SourceSettings:
    """The values of SOURCE_SETTINGS: what a model source is made from, and what it is cached by."""

    model: str
    seed: int
    inputs: tuple[str, ...]  # a factory's example input shapes
    weights: str | None
    data: str | None  # [train] data
    val_fraction: float
    loss: str | None
    eval_data: str | None
    metric: str | None
    images: ImageSection

    @classmethod
    def of(cls, job: JobSettings) -> SourceSettings:
        """Read from a job (or a stage's view of it)."""
        return cls(
            job.job.model,
            job.job.seed,
            job.job.inputs,
            job.job.weights,
            job.train.data,
            job.train.val_fraction,
            job.train.loss,
            job.validate_.eval_data,
            job.validate_.metric,
            job.export.images,
        )


@dataclass(frozen=True)
class Task:
    """How a model is trained and judged: its loss (None: the task's default) and its metric."""

    kind: str  # "classification" or "regression": the default loss (cross-entropy or MSE)
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    primary: str
    lower_is_better: tuple[str, ...] = ()  # metric names whose drop is a rise (error, loss, ...)
    loss: Callable | None = None  # the user's (outputs, targets) -> loss tensor


@dataclass(frozen=True)
class ModelSource:
    """A job's model, whatever it came from."""

    kind: str  # "zoo", "factory" or "onnx"
    ref: str
    inputs: tuple[InputSpec, ...]
    task: Task | None  # None: no labels, no metric (an .onnx file or a factory without data)
    # a fresh module as the source gives it: untrained for the zoo, with the given weights for a factory
    build: Callable[[], object] | None = None
    weights_given: bool = False
    examples: Callable[[], tuple] = tuple  # example input tensors for torch.export (none for an .onnx file)
    splits: Callable[[], DatasetSplits | None] = lambda: None  # labelled train/val/test splits, seeded
    train_defaults: dict = field(default_factory=dict)
    image_inputs: tuple[str, ...] = ()

    @property
    def input_names(self) -> list[str]:
        """Input names in forward()'s order."""
        return [s.name for s in self.inputs]

    @property
    def has_module(self) -> bool:
        """True for sources that give a PyTorch module (train, compress and the torch reference apply)."""
        return self.build is not None


def metric_drop(reference: float, value: float, lower_is_better: bool) -> float:
    """How much worse value is than reference (negative: better)."""
    return value - reference if lower_is_better else reference - value


def model_source(job: JobSettings) -> ModelSource:
    """The job's model source; the only place that tells a zoo model, a factory and an .onnx file apart."""
    return _source(SourceSettings.of(job))


@functools.lru_cache(maxsize=4)
def _source(settings: SourceSettings) -> ModelSource:
    kind = model_kind(settings.model)
    if kind == "zoo":
        return _zoo(settings)
    if kind == "factory":
        return _factory(settings)
    from edgepipe.exporters.onnx import onnx_input_specs

    inputs = tuple(onnx_input_specs(Path(settings.model)))
    return ModelSource("onnx", settings.model, inputs, _user_task(settings, None))


def _zoo(settings: SourceSettings) -> ModelSource:
    from edgepipe.models.zoo import get_model

    spec = get_model(settings.model)
    return ModelSource(
        "zoo",
        spec.name,
        spec.inputs,
        Task(spec.task, spec.metric, spec.primary_metric),
        build=spec.build,
        examples=lambda: _zeros(spec.inputs),
        splits=functools.cache(lambda: spec.dataset(settings.seed)),
        train_defaults=spec.train_defaults,
        image_inputs=spec.image_inputs,
    )


def _factory(settings: SourceSettings) -> ModelSource:
    from edgepipe.pipeline.core.user_models import load_user_model

    made = load_user_model(settings.model, settings.inputs, settings.weights, settings.seed)
    # The source is cached: its closures keep the inputs and examples, not `made`, whose module is a copy
    # of the weights.
    inputs, examples = made.inputs, made.examples

    def build():
        return load_user_model(settings.model, settings.inputs, settings.weights, settings.seed).module

    labelled = settings.data is not None
    return ModelSource(
        "factory",
        settings.model,
        inputs,
        _user_task(settings, "classification" if labelled or settings.eval_data else None),
        build=build,
        weights_given=settings.weights is not None,
        examples=lambda: examples,
        splits=functools.cache(lambda: user_splits(settings, inputs) if labelled else None),
        image_inputs=tuple(s.name for s in inputs if len(s.shape) == 4 and s.dtype.startswith("float")),
    )


def _zeros(specs: tuple[InputSpec, ...]) -> tuple:
    import torch

    return tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in specs)


def _user_task(settings: SourceSettings, kind: str | None) -> Task | None:
    """Top-1 accuracy on class labels unless the job names its own metric (and loss)."""
    from edgepipe.pipeline.core.user_data import accuracy

    if settings.metric:
        function = _user_function(settings.metric, "[validate] metric")
        name = getattr(function, "__name__", "metric")
        higher = bool(getattr(function, "higher_is_better", True))
        metric = _named_metric(function, name, settings.metric)
        return Task(kind or "classification", metric, name, () if higher else (name,), _loss(settings.loss))
    if kind is None and not settings.eval_data:
        return None
    return Task("classification", accuracy, "accuracy", (), _loss(settings.loss))


def _loss(ref: str | None) -> Callable | None:
    if not ref:
        return None
    function = _user_function(ref, "[train] loss")

    def loss(outputs, targets):
        try:
            return function(outputs, targets)
        except Exception as exc:
            raise UserCodeError(f"[train] loss {ref}", exc) from exc

    return loss


def _user_function(ref: str, what: str) -> Callable:
    from edgepipe.pipeline.core.user_models import import_user_module

    module_name, attr = ref.split(":")
    function = getattr(import_user_module(module_name, ref, ConfigError), attr, None)
    if not callable(function):
        raise ConfigError(f"{what} {ref}: {module_name} has no callable {attr!r}")
    return function


def _named_metric(function: Callable, name: str, ref: str) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    """The user's metric as {name: value}; what it raises is the user's error, said with its own words."""

    def metric(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        try:
            value = function(outputs, labels)
        except Exception as exc:
            raise UserCodeError(f"[validate] metric {ref}", exc) from exc
        values = value if isinstance(value, dict) else {name: value}
        try:
            return {str(k): float(v) for k, v in values.items()}
        except (TypeError, ValueError):
            raise InputFileError(
                f"[validate] metric {ref} returned {value!r}; return a number or a dict of numbers"
            ) from None

    return metric


def user_splits(settings: SourceSettings, specs: tuple[InputSpec, ...]) -> DatasetSplits:
    """[train] data split into train and a seeded validation part (stratified by class); the test part is
    [validate] eval_data when given, else the validation part."""
    from edgepipe.pipeline.core.user_data import load_labelled

    inputs, labels = load_labelled(settings.data, specs, "[train] data", settings.images)
    count = len(labels)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(count)
    classes = labels.dtype.kind in "iu" and labels.ndim == 1
    val_index = _stratified(labels[order], settings.val_fraction) if classes else None
    n_val = max(1, round(count * settings.val_fraction))
    val = order[val_index] if val_index is not None else order[:n_val]
    train = order[~np.isin(order, val)]
    if len(train) < 2 or len(val) < 1:
        raise InputFileError(
            f"[train] data {settings.data} holds {count} samples: too few to hold back "
            f"{settings.val_fraction:.0%} for early stopping and still train; give more samples"
        )

    def take(index):
        return {k: np.ascontiguousarray(v[index]) for k, v in inputs.items()}

    x_test, y_test = take(val), labels[val]
    if settings.eval_data:
        from edgepipe.pipeline.core.user_data import load_eval

        x_test, y_test = load_eval(settings.eval_data, specs, settings.images)
    return DatasetSplits(take(train), labels[train], take(val), labels[val], x_test, y_test)


def _stratified(labels: np.ndarray, fraction: float) -> np.ndarray:
    """Positions (into labels) of a validation part holding `fraction` of every class (at least one each)."""
    picked = []
    for value in np.unique(labels):
        where = np.flatnonzero(labels == value)
        if len(where) > 1:
            picked.append(where[: max(1, round(len(where) * fraction))])
    return np.sort(np.concatenate(picked)) if picked else np.arange(max(1, round(len(labels) * fraction)))
