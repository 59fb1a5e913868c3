"""Turn known errors into one line on stderr and exit code 1; tracebacks only with SPINE_DEBUG=1."""

from __future__ import annotations

import os
import sys

import typer

from spinedata.errors import SpineError


def run_app(app: typer.Typer) -> None:
    """Run the Typer app; a ``SpineError`` (or a missing file) prints ``error: ...`` and exits 1."""
    try:
        app(standalone_mode=True)
    except (SpineError, FileNotFoundError) as error:
        if os.environ.get("SPINE_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
