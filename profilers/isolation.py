"""Run one measurement in a fresh spawned process, so no runtime state or memory peak leaks between them."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, TypeVar

from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ProfileError

T = TypeVar("T")


def in_child(function: Callable[..., T], *args, log_path: Path | None = None, **kwargs) -> T:
    """function(*args, **kwargs) in a spawned child; its native stdout/stderr go to log_path when given.

    function must be importable by name (spawn pickles it). A child that dies is a ProfileError naming
    the function and the runtimes and files it was given; an exception the child raises comes back as it is.
    """
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_call, function, args, kwargs, log_path).result()
    except BrokenProcessPool:
        subjects = ", ".join(_subjects((*args, *kwargs.values())))
        raise ProfileError(
            f"{function.__name__} crashed on {subjects or 'its arguments'}: its child process died "
            "(a runtime aborted or ran out of memory)"
        ) from None


def _subjects(values) -> list[str]:
    """The names (runtimes) and files among a call's arguments, nested sides included, in order."""
    found = []
    for value in values:
        if isinstance(value, (str, os.PathLike)):
            found.append(str(value))
        elif isinstance(value, (tuple, list)):
            found += _subjects(value)
    return found


def _call(function: Callable[..., T], args: tuple, kwargs: dict, log_path: Path | None) -> T:
    if log_path is None:
        return function(*args, **kwargs)
    with output_to_log(log_path):
        return function(*args, **kwargs)
