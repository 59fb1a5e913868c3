"""Checks of output paths, made before any long work: one ``error:`` line instead of a traceback later."""

from __future__ import annotations

from pathlib import Path

from spinedata.errors import OutputPathError


def output_file(path: Path | None, option: str = "--out") -> Path | None:
    """``path`` when it can name a file to write (new, or an existing file to replace); ``OutputPathError``
    when it names a folder, or lies under a file."""
    if path is None:
        return None
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; name the file to write")
    _parent_is_no_file(path, option)
    return path


def output_dir(path: Path, option: str = "--out", hint: str = "name a new folder") -> Path:
    """``path`` when it can name a folder to write into (new or existing); ``OutputPathError`` when it
    names a file, or lies under one."""
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, not a folder; {hint}")
    _parent_is_no_file(path, option)
    return path


def _parent_is_no_file(path: Path, option: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{option} {path}: {parent} is a file, not a folder")
            return
