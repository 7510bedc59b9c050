"""The one exception family of edgepipe; every package raises these.

Exit codes: 0 ok; 1 a check failed (gate, numerics, a failed job in a batch); 2 bad input, including an
exception raised in the user's own code; 3 an internal error (anything that is not an EdgepipeError).
"""

import traceback
from pathlib import Path

INTERNAL_ERROR_EXIT = 3
# edgepipe's own source folders (edgepipe.models, ...): frames there are ours, not the user's
_OURS = tuple(
    Path(__file__).resolve().parents[2] / name
    for name in ("models", "exporters", "profilers", "android_bench", "pipeline")
)


class EdgepipeError(Exception):
    """Base of every error edgepipe reports to a user as one clear line."""

    exit_code = 2


class ConfigError(EdgepipeError):
    """A job or budgets file is missing, unparsable or invalid."""


class ModelNotFoundError(EdgepipeError):
    """A model name matches nothing in the zoo."""


class InputFileError(EdgepipeError):
    """A file given on the command line cannot be read as what it claims to be."""


class OutputDirError(EdgepipeError):
    """The output directory cannot be created or written."""


class UserCodeError(EdgepipeError):
    """The user's own code (a factory, a data function, a loss or a metric) raised; `__cause__` is its exception."""

    def __init__(self, what: str, exc: BaseException):
        where = user_frame(exc)
        super().__init__(
            f"{what} raised {type(exc).__name__}: {first_line(exc) or '(no message)'}"
            + (f" (at {where})" if where else "")
            + "; fix it in your code (--debug shows the whole traceback)"
        )


def user_frame(exc: BaseException) -> str | None:
    """'file:line' of the innermost frame of the traceback outside edgepipe and installed packages."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if "site-packages" in path.parts or any(path.is_relative_to(o) for o in _OURS) or frame.filename[:1] == "<":
            continue
        return f"{frame.filename}:{frame.lineno}"
    return None


class ExportError(EdgepipeError):
    """A conversion step failed."""

    exit_code = 1


class ParityError(EdgepipeError):
    """Converted outputs disagree with the reference beyond tolerance."""

    exit_code = 1


class ProfileError(EdgepipeError):
    """A model could not be loaded or timed by a runtime."""

    exit_code = 1


class DeviceError(EdgepipeError):
    """An Android device could not be reached or misbehaved; `partial` keeps what a broken run got."""

    exit_code = 1

    def __init__(self, message: str, partial: dict | None = None):
        super().__init__(message)
        self.partial = partial


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most limit characters; "" when it has none.

    Libraries raise with pages of detail; a user's one-line error keeps the first line and points
    to the log for the rest.
    """
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else ""


def summary(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    return first_line(exc, limit) or type(exc).__name__
