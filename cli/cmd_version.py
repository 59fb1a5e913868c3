"""``spine version``."""

from __future__ import annotations

import typer


def version() -> None:
    """Print the installed version of spine."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("spine"))
