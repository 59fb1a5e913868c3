"""The ingest report: one line per file, series, study or CSV row that was skipped or handled specially."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPORT_COLUMNS = ("path", "study_id", "series_id", "reason")


@dataclass(frozen=True)
class Skipped:
    """One line of an ingest report: a file (or group of files) left out, and why."""

    path: str
    reason: str
    study_id: str = ""
    series_id: str = ""


def write_report(path, lines: Iterable[Skipped]):
    """Write report lines as CSV (``path, study_id, series_id, reason``); the header is always written.
    ``path``: a local path, or an ``ObjectPath`` (the report inside a store at a URL: one object)."""
    if not isinstance(path, str | os.PathLike):  # an ObjectPath (spinedata.store.objectpath)
        text = io.StringIO(newline="")
        _write_lines(text, lines)
        path.write_bytes(text.getvalue().encode())
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        _write_lines(handle, lines)
    return path


def _write_lines(handle, lines: Iterable[Skipped]) -> None:
    writer = csv.writer(handle)
    writer.writerow(REPORT_COLUMNS)
    for line in lines:
        writer.writerow([line.path, line.study_id, line.series_id, line.reason])


def is_report(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is empty or starts with the header ``write_report`` writes (so that
    writing a report over it loses no other data)."""
    with open(path, "rb") as handle:
        first = handle.readline(4096)
    return first == b"" or first.rstrip(b"\r\n") == ",".join(REPORT_COLUMNS).encode()


def read_report(path: str | os.PathLike) -> list[Skipped]:
    """Read a report written by ``write_report``."""
    with open(path, newline="") as handle:
        return [
            Skipped(path=row["path"], reason=row["reason"], study_id=row["study_id"], series_id=row["series_id"])
            for row in csv.DictReader(handle)
        ]


def to_records(lines: Iterable[Skipped]) -> list[dict[str, str]]:
    """Report lines as JSON-able dicts (kept in a study's attributes so a re-run reports them again)."""
    return [{"path": s.path, "study_id": s.study_id, "series_id": s.series_id, "reason": s.reason} for s in lines]


def from_records(records: Iterable[dict]) -> list[Skipped]:
    """Inverse of ``to_records``."""
    return [
        Skipped(path=r.get("path", ""), reason=r.get("reason", ""), study_id=r.get("study_id", ""),
                series_id=r.get("series_id", ""))
        for r in records
    ]  # fmt: skip
