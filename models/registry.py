"""The zoo registry: a dict of ModelSpec filled by the @register decorator."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from models.errors import ModelNotFoundError
from models.specs import InputSpec


@dataclass(frozen=True)
class DatasetSplits:
    """Seeded train/validation/test arrays; x in the model's own (PyTorch) layout."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class ModelSpec:
    """Everything edgepipe needs to build, train and judge one zoo model."""

    name: str
    description: str
    task: str
    build: Callable[[], "object"]
    dataset: Callable[[int], DatasetSplits]
    inputs: tuple[InputSpec, ...]
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    primary_metric: str
    train_defaults: dict = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {}


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
        close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}: {hint}run 'edgepipe models' to list the zoo"
        ) from None
