"""The ``spine`` command line: wiring only. Each command lives in its own module and calls the libraries."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from . import commands
from .startup import prepare_process, process_ending

HELP = "Lumbar spine MRI: DICOM -> Zarr store -> disc-level keypoints -> degenerative grades."


def build_app(names: Sequence[str] = commands.COMMANDS) -> typer.Typer:
    """The Typer app with the commands ``names`` (default: all of them)."""
    built = typer.Typer(
        name="spine", help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )

    @built.callback()
    def _root() -> None:
        """Lumbar spine MRI: DICOM -> Zarr store -> disc-level keypoints -> degenerative grades."""

    for name, function in commands.all_commands(names):
        built.command(name)(function)
    return built


app = build_app()
"""Every command (what ``spine --help`` lists; tests invoke this)."""


def main() -> None:
    """Console-script entry point: known errors become one line and exit code 1.

    Only the command named on the command line is built (Typer reads the parameters of every command it
    is given); help and unknown names get the whole app. The process
    is set up for that command first (``cli.startup.prepare_process``). At the end
    the objects still alive are frozen: the process is ending, and the interpreter's last garbage
    collections would otherwise walk every imported module's objects (``docs/benchmarks.md``).
    """
    from .errors import run_app

    names = commands.requested(sys.argv[1:])
    prepare_process(names)
    try:
        run_app(app if names == commands.COMMANDS else build_app(names))
    finally:
        process_ending()


if __name__ == "__main__":
    main()
