"""Where ingest writes, checked before any work: the store's path and the report's, each refused in one line
when writing there could destroy data or cannot work (a name too long, a file in the way, no permission)."""

from __future__ import annotations

import os
from pathlib import Path

from spinedata.errors import OutputPathError
from spinedata.report import is_report
from spinedata.store.urls import is_url, store_location

REPORT_NAME = "ingest_report.csv"
"""The report's file name inside the store, where it goes unless ``--report`` names another place."""


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


def _is_report(path: Path) -> bool:
    """``is_report``, with an unreadable file as ``OutputPathError``."""
    try:
        return is_report(path)
    except OSError as error:
        raise OutputPathError(f"--report {str(path)!r} exists and cannot be read ({error}); not overwriting it") from error


def check_report_path(data_dir: str | os.PathLike, out, report: str | os.PathLike | None):
    """Where the report goes (``OUT/ingest_report.csv`` for None), checked before any work: ``OutputPathError``
    (one line) for a path whose writing could destroy data: inside the input folder or the store (other than
    the default report), an existing folder, an existing file that is not an ingest report (an input, wherever
    it lies), or a path below a file. Links are followed. ``out`` may be a store URL (the default report is
    then an object of the store); ``--report`` is a local file."""
    store = store_location(out, writing=True)
    if report is None:
        return store / REPORT_NAME
    if is_url(report):
        raise OutputPathError(f"--report {report!r}: name a local file (the default report goes into the store)")
    path = Path(report)
    target = path.resolve()
    if _within(target, Path(data_dir).resolve()):
        raise OutputPathError(f"--report {str(path)!r} lies inside the input folder {str(data_dir)!r}; "
                              "write the report outside it")
    if isinstance(store, Path) and _within(target, store.resolve()) and target != (store / REPORT_NAME).resolve():
        raise OutputPathError(f"--report {str(path)!r} lies inside the store {str(out)!r}; leave --report out "
                              f"(the report then goes to {str(store / REPORT_NAME)!r}) or write it outside the store")
    if target.is_dir():
        raise OutputPathError(f"--report {str(path)!r} is a folder; name a file (e.g. {str(path / REPORT_NAME)!r})")
    if target.exists() and not _is_report(target):
        raise OutputPathError(f"--report {str(path)!r} exists and is not an ingest report; not overwriting it")
    folder = next(p for p in target.parents if p.exists())
    if not folder.is_dir():
        raise OutputPathError(f"--report {str(path)!r} cannot be written: {str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OutputPathError(f"--report {str(path)!r} cannot be written: no permission to write in {str(folder)!r}")
    return path


STORE_NAME_ROOM = 160
"""Characters kept free below the store's path for the names the store adds inside it (study and series ids
of up to ``ids.MAX_ID_LENGTH``, staging suffixes)."""


def _name_limits(folder: Path) -> tuple[int, int]:
    """``(longest file name, longest path)`` of the file system holding ``folder`` (255 and 4096 where unknown)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return 255, 4096


def _existing_ancestor(path: Path) -> Path:
    absolute = Path(os.path.abspath(path))
    return next(p for p in (absolute, *absolute.parents) if os.path.lexists(p))


def check_path_names(path: Path, what: str) -> None:
    """``OutputPathError`` (one line) when a component of ``path`` is longer than its file system allows,
    or the whole path too long to hold a store (``STORE_NAME_ROOM``)."""
    name_max, path_max = _name_limits(_existing_ancestor(path))
    for part in Path(os.path.abspath(path)).parts:
        if len(os.fsencode(part)) > name_max:
            raise OutputPathError(f"{what} {str(path)!r}: the name {part[:40]!r}... is {len(os.fsencode(part))} "
                                  f"bytes long, more than the {name_max} this file system allows")  # fmt: skip
    if len(os.fsencode(os.path.abspath(path))) + STORE_NAME_ROOM > path_max:
        raise OutputPathError(f"{what} {str(path)!r}: the path is too long ({len(os.path.abspath(path))} characters; "
                              f"at most {path_max - STORE_NAME_ROOM})")  # fmt: skip


def check_store_path(out):
    """The store's path, checked before any work: ``OutputPathError`` (one line) for a name too long, a path
    that is (or lies below) a file, or a folder this process may not write in. A store URL is checked by
    ``spinedata.store.urls.store_location`` (``StoreError`` for one that cannot work) and returned as an
    ``ObjectPath``; a ``file://`` URL is a local path."""
    store = store_location(out, writing=True)
    if not isinstance(store, Path):
        return store
    check_path_names(store, "output")
    existing = _existing_ancestor(store)
    if not existing.is_dir():
        where = "is a file" if existing == Path(os.path.abspath(store)) else f"lies below the file {str(existing)!r}"
        raise OutputPathError(f"output {str(store)!r} {where}, not a folder; name a new or existing store folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"output {str(store)!r}: no permission to write in {str(existing)!r} (read-only?)")
    return store
