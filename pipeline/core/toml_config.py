"""One way to read a TOML settings file and check it: pydantic models, errors naming the key path.

Job files, budgets files, batch files and the per-user config all go through `read_toml` and
`checked`, so every mistake reads the same: `budget[0].max_sise: unknown key; did you mean
'budget[0].max_size'?` or `train.lr = -1: Input should be greater than 0`, one line, exit 2.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edgepipe.models.shared.errors import ConfigError

# Every settings model: an unknown key is an error, and a checked setting never changes afterwards.
STRICT = ConfigDict(extra="forbid", frozen=True)

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path, missing_hint: str) -> dict:
    """A TOML file's tables; a missing, unreadable or malformed file is one ConfigError."""
    try:
        return parse_toml(Path(path).read_text(), str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def parse_toml(text: str, source: str) -> dict:
    """TOML text's tables; `source` names it in the error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None


def checked(model: type[M], data: object, source: str) -> M:
    """data validated into model; one ConfigError lists every problem by key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(model, err) for err in exc.errors())) from None


def _describe(model: type[BaseModel], err: dict) -> str:
    """'train.epoch: unknown key; did you mean 'train.epochs'?' and the like."""
    loc = list(err["loc"])
    where = _path(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"did you mean {_path(loc[:-1] + close)!r}?" if close else f"known keys: {', '.join(known)}"
        return f"{where}: unknown key; {hint}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    message = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if not loc:
        return message
    return f"{where}: {message}" if isinstance(value, (dict, list)) else f"{where} = {value!r}: {message}"


def _path(loc: list) -> str:
    """('budget', 0, 'max_size') -> 'budget[0].max_size'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _known_keys(model: type[BaseModel], loc: list) -> list[str]:
    """The keys allowed at loc inside model (list indices step into the list's items)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_in(annotation) -> type[BaseModel] | None:
    """The settings model inside an annotation such as `Budget`, `list[Budget]` or `Gate | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, tuple, typing.Union, types.UnionType, typing.Annotated):
        return next((m for a in typing.get_args(annotation) if (m := _model_in(a)) is not None), None)
    return None
