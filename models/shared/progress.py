"""Progress of long steps, told through logging: any layer can say what it is doing without knowing
who listens (the CLI shows it on stderr; a library user sees nothing unless they want it)."""

from __future__ import annotations

import logging

LOG = logging.getLogger("edgepipe.progress")


def step(message: str) -> None:
    """A long step starts; always shown."""
    LOG.info(message, extra={"progress": "step"})


def tick(message: str) -> None:
    """How far a step has got; off a terminal shown at most every few seconds."""
    LOG.info(message, extra={"progress": "tick"})
