"""Turn known errors into one line on stderr and exit code 1 (tracebacks only with SPINE_DEBUG=1), and
spinedata's warnings into one ``warning: ...`` line each."""

from __future__ import annotations

import os
import sys
import warnings

import typer

from spinedata.errors import SpineError, SpineWarning, missing_extra


def run_app(app: typer.Typer) -> None:
    """Run the Typer app; a ``SpineError`` or an ``OSError`` (a missing file, a folder that cannot be written,
    a full disk) prints ``error: ...`` and exits 1. So does a library of an extra that is not installed
    (``torch`` without ``spine[models]``: ``spinedata.errors.missing_extra``); any other missing module is a bug
    and keeps its traceback. A ``SpineWarning`` is one ``warning: ...`` line on stderr."""
    with warnings.catch_warnings():  # restores showwarning
        warnings.showwarning = _show_warning(warnings.showwarning)
        try:
            app(standalone_mode=True)
        except (SpineError, OSError) as error:
            _fail(error)
        except ModuleNotFoundError as error:
            command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
            known = missing_extra(error, f"spine {command}".strip())
            if known is None or os.environ.get("SPINE_DEBUG"):
                raise
            _fail(known)


def _show_warning(show):
    """``warnings.showwarning`` that prints a ``SpineWarning`` as one line and passes others to ``show``."""

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SpineWarning):
            print(f"warning: {one_line(message)}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return one_line_warning


def _fail(error: BaseException) -> None:
    if os.environ.get("SPINE_DEBUG"):
        raise error
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(1)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line: an ``OSError`` of the system as ``what: path`` (``Permission
    denied: 'out/x.csv'``), any other as its text."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror}: {str(error.filename)!r}"
        if error.filename2 is not None:
            text += f" -> {str(error.filename2)!r}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())
