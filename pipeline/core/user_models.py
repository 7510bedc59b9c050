"""User models: `pkg.module:factory` references, their example inputs and optional weights."""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgepipe.models.shared.errors import ConfigError, InputFileError, ModelNotFoundError, UserCodeError, first_line
from edgepipe.models.shared.specs import InputSpec, random_array

_SPEC = re.compile(r"^(\d+(?:x\d+)*)(?::(\w+))?$")
# Rank -> the layout a user's tensor is assumed to have: images are channels-first as in
# PyTorch; anything else (sequences, tables) is kept as it is, which is always correct.
_LAYOUT_BY_RANK = {4: "NCHW", 5: "NCDHW"}


@dataclass(frozen=True)
class UserModel:
    """A user's module in eval mode, its example inputs and their specs."""

    module: torch.nn.Module
    examples: tuple[torch.Tensor, ...]
    inputs: tuple[InputSpec, ...]


def parse_input(text: str) -> tuple[tuple[int, ...], str]:
    """'1x3x32x32[:float32]' -> ((1, 3, 32, 32), 'float32')."""
    match = _SPEC.match(text.strip())
    if not match:
        raise ConfigError(f"--input {text!r}: expected a shape like 1x3x32x32, optionally :dtype (e.g. :int64)")
    dtype = match.group(2) or "float32"
    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise ConfigError(f"--input {text!r}: unknown dtype {dtype!r}; use float32, float16, int64, int32, ...")
    return tuple(int(d) for d in match.group(1).split("x")), dtype


def load_user_model(ref: str, input_texts: tuple[str, ...], weights: str | None, seed: int) -> UserModel:
    """Import and call the factory (seeded), load weights, and settle the example inputs.

    The checks, the export and the validation each ask for the model: it is kept from one caller to the
    next (a real network's random initialisation takes seconds) and every caller gets its own copy,
    since callers train or rewrite it. Beside a converter child the export stage drops the kept one
    (forget_built_models) once it has its copy, so that it is not held beside the conversion.
    """
    stamp = Path(weights).stat().st_mtime_ns if weights and Path(weights).is_file() else None
    # The module object is part of the key: a module imported anew is a new one.
    module = import_user_module(ref.split(":")[0], ref)
    return copy.deepcopy(_built(module, ref, tuple(input_texts), weights, stamp, seed))


def forget_built_models() -> None:
    """Drop the factory's module kept for the next caller; a later one builds it again."""
    _built.cache_clear()


@functools.lru_cache(maxsize=1)
def _built(
    module, ref: str, input_texts: tuple[str, ...], weights: str | None, _weights_stamp: int | None, seed: int
) -> UserModel:
    factory = _factory(module, ref)
    torch.manual_seed(seed)
    try:
        made = factory()
    except Exception as exc:  # the user's code may raise anything
        raise UserCodeError(f"factory {ref}", exc) from exc
    module, examples = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not isinstance(module, torch.nn.Module):
        raise ModelNotFoundError(
            f"factory {ref} returned {type(module).__name__}; it must return an nn.Module "
            "or a tuple (module, example_inputs)"
        )
    if weights:
        module.load_state_dict(load_weights(Path(weights)))
    module.eval()
    names = _forward_names(module)
    if input_texts:
        rng = np.random.default_rng(seed)
        examples = tuple(_random_tensor(rng, *parse_input(t)) for t in input_texts)
    elif examples is None:
        raise ConfigError(f"factory {ref} returned a bare module: give its inputs with --input 1x3x32x32[:dtype]")
    examples = (examples,) if isinstance(examples, torch.Tensor) else tuple(examples)
    if len(examples) > len(names):
        names += [f"input_{i}" for i in range(len(names), len(examples))]
    specs = tuple(
        InputSpec(
            n,
            tuple(e.shape),
            str(e.dtype).removeprefix("torch."),
            _LAYOUT_BY_RANK.get(e.dim(), "N" + "D" * (e.dim() - 1)),
        )
        for n, e in zip(names, examples)
    )
    return UserModel(module, examples, specs)


def load_weights(path: Path) -> dict:
    """A state dict loaded with weights_only=True; anything needing unsafe unpickling is refused."""
    if not path.is_file():
        raise InputFileError(f"weights file {path} not found; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputFileError(
            f"weights file {path} needs unsafe unpickling ({first_line(exc, 120)}); edgepipe loads "
            "weights only: save them with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # zip, EOF, version errors: all mean "not a readable checkpoint"
        raise InputFileError(f"weights file {path} is not a readable torch checkpoint ({exc})") from None
    if not isinstance(state, dict):
        raise InputFileError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def import_user_module(module_name: str, ref: str, error: type[Exception] = ModelNotFoundError):
    """Import the module a 'pkg.module:name' reference names; a module in the current directory counts."""
    # Like `python -m`, a module in the current directory is importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise error(
            f"cannot import {module_name!r} for {ref}: {exc}; is the package installed or on PYTHONPATH?"
        ) from None
    except Exception as exc:  # the module's own code raised while it was imported
        raise UserCodeError(f"importing {module_name} for {ref}", exc) from exc


def _factory(module, ref: str):
    attr = ref.split(":")[1]
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelNotFoundError(f"{module.__name__} has no callable {attr!r} (from {ref})")
    return factory


def _forward_names(module: torch.nn.Module) -> list[str]:
    params = inspect.signature(module.forward).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _random_tensor(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    """specs.random_array's values as a tensor of any torch dtype (bfloat16 has no numpy twin)."""
    integral = dtype.startswith(("int", "uint", "bool"))
    return torch.from_numpy(random_array(rng, shape, dtype if integral else "float32")).to(getattr(torch, dtype))
