"""The edgepipe command line: thin commands that parse, call the pipeline and print results.

`console` is the console script, `entry` what it runs, and `app` the Typer application; nothing outside
this package imports it.
"""

from edgepipe.pipeline.cli.main import app, console, entry

__all__ = ["app", "console", "entry"]
