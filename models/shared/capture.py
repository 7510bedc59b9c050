"""Send everything a converter prints, Python and native alike, into a log file."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def output_to_log(log_path: Path) -> Iterator[None]:
    """Redirect file descriptors 1 and 2 to log_path (appending) for the duration.

    TensorFlow's C++ logging writes straight to fd 2, so swapping sys.stdout alone
    would leave it on the terminal.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
