"""The edgepipe command line: thin commands that parse, call the pipeline and print results.

`entry` is the console script and `app` the Typer application; nothing outside this package imports it.
"""

from edgepipe.pipeline.cli.main import app, entry

__all__ = ["app", "entry"]
