"""Terminal output shared by every command: tables whose key columns never truncate, and progress."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgepipe.models.shared.progress import LOG

PROGRESS_LOGGER = LOG.name


def keyed_table(headers: Sequence[str], rows: Iterable[Sequence[str]], keys: int = 1, **options) -> Table:
    """A rich table whose first `keys` columns keep their whole text at any width; the others fold."""
    rows = [[str(cell) for cell in row] for row in rows]
    table = Table(**options)
    for i, header in enumerate(headers):
        if i < keys:
            width = max(_width(cell) for cell in [header, *(row[i] for row in rows)])
            table.add_column(header, no_wrap=True, min_width=width)
        else:
            table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _width(cell: str) -> int:
    return Text.from_markup(cell).cell_len


class ProgressHandler(logging.Handler):
    """Shows `models.shared.progress` on the terminal the command started with, while stdout stays clean.

    It writes to a duplicate of file descriptor 2 taken at start, so progress still shows while a
    converter's own output is redirected into a stage log. On a terminal: one live status line
    (rich); elsewhere: plain lines, every step start and a tick at most every `interval` seconds.
    """

    def __init__(self, interval: float = 5.0):
        super().__init__(logging.INFO)
        self.stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        self.interval, self.last, self.start = interval, 0.0, time.monotonic()
        self.status = None
        if self.stream.isatty():
            self.status = Console(file=self.stream).status("")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.status is not None:
            self.status.update(f"{message} [dim]({time.monotonic() - self.start:.0f} s)[/dim]")
            self.status.start()
            return
        now = time.monotonic()
        if getattr(record, "progress", "step") == "step" or now - self.last >= self.interval:
            self.last = now
            self.stream.write(f"[{now - self.start:7.1f} s] {message}\n")

    def pause(self) -> None:
        """Clear the live line (before printing a result)."""
        if self.status is not None:
            self.status.stop()

    def close(self) -> None:
        self.pause()
        self.stream.close()
        super().close()


@contextlib.contextmanager
def progress_shown(interval: float = 5.0) -> Iterator[ProgressHandler]:
    """Show progress for the duration of a command."""
    handler = ProgressHandler(interval)
    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not also through the root logger's "INFO ..." lines
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
