"""The `edgepipe` application: its commands in the order --help lists them, and the console entry."""

from __future__ import annotations

import gc
import logging
import sys
import traceback

import typer

from edgepipe.models.shared.errors import INTERNAL_ERROR_EXIT, EdgepipeError
from edgepipe.pipeline.cli.export import export, models
from edgepipe.pipeline.cli.gate import gate
from edgepipe.pipeline.cli.jobs import batch, run
from edgepipe.pipeline.cli.profile import devices, profile

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=(
        "Train, export PyTorch -> ONNX -> TFLite with checked numerics, and profile.\n\n"
        "Exit codes: 0 ok; 1 a check failed (gate, numerics, a failed batch job); 2 bad input, including an "
        "exception raised in your own code; 3 an internal error."
    ),
)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")) -> None:
    """edgepipe: small PyTorch models to phones, with honest numbers."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


for command in (run, models, export, profile, devices, gate, batch):
    app.command()(command)


def entry() -> None:
    """Console-script entry: one clear line and the right exit code for every edgepipe error."""
    debug = "--debug" in sys.argv[1:]
    try:
        app()  # standalone: usage errors print and exit 2 inside
    except EdgepipeError as exc:
        if debug:
            traceback.print_exc()
        print(f"edgepipe: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unforeseen still gets one line, and its own exit code
        if debug:
            traceback.print_exc()
        print(
            f"edgepipe: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; "
            "please report it)",
            file=sys.stderr,
        )
        sys.exit(INTERNAL_ERROR_EXIT)


def console() -> None:
    """The installed `edgepipe` command: entry(), then an exit without the interpreter's last garbage
    collection over every object the command made. That pass finds nothing to free in a process that is
    ending, and took 1.4 s of a convnext_tiny export's 28 s (PyTorch's heap traversed object by object);
    frozen objects are skipped by it, while atexit handlers and finalizers still run."""
    try:
        entry()
    finally:
        gc.freeze()
