"""Run one measurement in a fresh spawned process, so no runtime state or memory peak leaks between them."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, TypeVar

from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ProfileError

T = TypeVar("T")


def in_child(crashed: str, function: Callable[..., T], *args, log_path: Path | None = None) -> T:
    """function(*args) in a spawned child; its native stdout/stderr go to log_path when given.

    function must be importable by name (spawn pickles it). A child that dies is a
    ProfileError saying `crashed`; an exception the child raises comes back as it is.
    """
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_call, function, args, log_path).result()
    except BrokenProcessPool:
        raise ProfileError(crashed) from None


def _call(function: Callable[..., T], args: tuple, log_path: Path | None) -> T:
    if log_path is None:
        return function(*args)
    with output_to_log(log_path):
        return function(*args)
