"""How a figure reads in a table: formatted, or a marker when it was not measured."""

from __future__ import annotations


def figure(value: float | None, spec: str = ".4f", suffix: str = "", absent: str = "-") -> str:
    """value formatted by spec with suffix, or `absent` when value is None."""
    return absent if value is None else format(value, spec) + suffix
