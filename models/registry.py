"""The zoo registry: a dict of ModelSpec filled by the @register decorator."""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgepipe.models.shared.errors import ModelNotFoundError
from edgepipe.models.shared.specs import InputSpec


@dataclass(frozen=True)
class DatasetSplits:
    """Seeded train/validation/test splits; x maps input names to arrays in the PyTorch layout.

    y holds class labels for classification and target arrays for regression tasks.
    """

    x_train: dict[str, np.ndarray]
    y_train: np.ndarray
    x_val: dict[str, np.ndarray]
    y_val: np.ndarray
    x_test: dict[str, np.ndarray]
    y_test: np.ndarray


@dataclass(frozen=True)
class Ref:
    """A function named "module:attribute", imported on its first call.

    The zoo's table names its builders, datasets and metrics this way, so listing the zoo (or
    rejecting a mistyped name) does not import PyTorch.
    """

    path: str

    def resolve(self) -> Callable:
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.resolve())


@dataclass(frozen=True)
class ModelSpec:
    """Everything edgepipe needs to build, train and judge one zoo model."""

    name: str
    description: str
    task: str  # "classification" (cross-entropy on class logits) or "regression" (MSE on targets)
    build: Callable[[], "object"]
    dataset: Callable[[int], DatasetSplits]
    inputs: tuple[InputSpec, ...]
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    primary_metric: str
    train_defaults: dict = field(default_factory=dict)
    image_inputs: tuple[str, ...] = ()  # inputs that light augmentation may shift

    @property
    def input_names(self) -> list[str]:
        """Names of the inputs in forward()'s order."""
        return [s.name for s in self.inputs]


MODELS: dict[str, ModelSpec] = {}
# Training's compute threads unless a job says otherwise, and those the recorded metrics were trained with:
# on 2 cores with anything else running, 2 threads made 3 epochs ~4x slower than 1.
DEFAULT_THREADS = 1


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the zoo under its name."""
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    MODELS[spec.name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """Look a model up by name, suggesting the closest names on a miss."""
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(MODELS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ModelNotFoundError(f"unknown model {name!r}: {hint}run 'edgepipe models' to list the zoo") from None
