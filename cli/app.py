"""The ``spine`` command line: wiring only. Each command lives in its own module and calls the libraries."""

from __future__ import annotations

import typer

from cli import commands

app = typer.Typer(
    name="spine",
    help="Lumbar spine MRI: DICOM -> Zarr store -> disc-level keypoints -> degenerative grades.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """Lumbar spine MRI: DICOM -> Zarr store -> disc-level keypoints -> degenerative grades."""


for name, function in commands.all_commands():
    app.command(name)(function)


def main() -> None:
    """Console-script entry point: known errors become one line and exit code 1."""
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
