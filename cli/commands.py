"""The list of commands of ``spine``. Each entry names its module; the module defines one function."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence

# command name -> module under cli/ that defines a function of the same name (``-`` becomes ``_``)
COMMANDS: tuple[str, ...] = (
    "version",
    "score",
    "ingest",
    "info",
    "verify",
    "train",
    "locate",
    "audit",
    "classify",
    "synth",
    "demo",
    "show",
    "export",
    "ngff",
)


def all_commands(names: Sequence[str] = COMMANDS) -> Iterator[tuple[str, Callable]]:
    """Yield ``(name, function)`` for the commands ``names`` (default: every command of the app)."""
    for name in names:
        module = importlib.import_module(f".cmd_{name.replace('-', '_')}", __package__)
        yield name, getattr(module, name.replace("-", "_"))


def requested(args: Sequence[str]) -> tuple[str, ...]:
    """The commands an app needs to run these command-line arguments: the one they name, else all (no
    command, an option such as ``--help`` first, or an unknown name, which the whole app reports)."""
    if args and args[0] in COMMANDS:
        return (args[0],)
    return COMMANDS
