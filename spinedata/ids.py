"""Study and series ids: the one check that an id can name a store entry and nothing else.

Ids come from CSVs, folder names, DICOM headers and API calls, and become folder names of the store
(``studies/<study_id>/<series_id>/``). An id that is not a single plain path component (``..``, ``a/b``,
an absolute path, ...) could lead reads or writes outside the store, so every entry point checks ids
here: the store's reader and writer refuse them with ``StoreError``; ingest leaves the file, folder or
CSV row out with a report line (``id_problem``).
"""

from __future__ import annotations

import re

from spinedata.errors import StoreError

_BAD_CHARACTER = re.compile(r"[/\\\x00-\x1f]")
"""Path separators (both kinds) and control characters, NUL included."""
MAX_ID_LENGTH = 128
"""Longest id (characters): a folder name must leave room for the store's staging suffix within the 255
bytes file systems allow (DICOM UIDs have at most 64 characters)."""


def id_problem(kind: str, value: object) -> str | None:
    """``None`` if ``value`` can be a study or series id (``kind`` names it in the message), else why not."""
    if isinstance(value, str) and len(value.encode("utf-8", "surrogateescape")) > MAX_ID_LENGTH:
        return f"{kind} {value[:40]!r}... is {len(value)} characters long, more than the {MAX_ID_LENGTH} an id may have"
    if (
        isinstance(value, str)
        and value
        and not value.startswith((".", "__"))  # "." and ".." too
        and not _BAD_CHARACTER.search(value)
    ):
        return None
    return (
        f"{kind} {value!r} cannot name a store entry: expected a non-empty id without '/', '\\', control "
        "characters or a leading '.'/'__' (DICOM UIDs and the competition's numeric ids are fine)"
    )


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it can be a study or series id, else raise ``StoreError`` (one line)."""
    problem = id_problem(kind, value)
    if problem:
        raise StoreError(problem)
    return value
