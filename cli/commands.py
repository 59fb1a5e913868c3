"""The list of commands of ``spine``. Each entry names its module; the module defines one function."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

# command name -> module under cli/ that defines a function of the same name (``-`` becomes ``_``)
COMMANDS: tuple[str, ...] = (
    "version",
    "score",
    "ingest",
    "info",
    "train",
    "locate",
    "audit",
    "classify",
    "synth",
    "demo",
    "show",
)


def all_commands() -> Iterator[tuple[str, Callable]]:
    """Yield ``(name, function)`` for every command of the app."""
    for name in COMMANDS:
        module = importlib.import_module(f"cli.cmd_{name.replace('-', '_')}")
        yield name, getattr(module, name.replace("-", "_"))
