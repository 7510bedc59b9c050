"""The one exception family of edgepipe; every package raises these."""


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
