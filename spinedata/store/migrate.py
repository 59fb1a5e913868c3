"""Bringing a store written by an earlier version up to this version's metadata, in place.

``add_ngff`` (``spine ngff STORE [--levels N]``): the OME-Zarr (NGFF 0.5) attributes of every stack
(``spinedata.store.ngff``), for stores of format 1 or 2 written without them, and optionally downsampled
levels for viewers (``spinedata.store.levels``).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

from spinedata.errors import StoreError
from spinedata.store import layout as L
from spinedata.store.levels import level_shapes, remove_levels, write_levels
from spinedata.store.ngff import listed_levels, with_ngff
from spinedata.store.objectpath import Location, ObjectPath, subfolders
from spinedata.store.urls import store_location
from spinedata.store.writer import IngestLock


@dataclass
class NgffReport:
    """What ``add_ngff`` did: studies visited, stacks seen, stacks whose metadata it (re)wrote, level
    arrays written and removed."""

    studies: int = 0
    stacks: int = 0
    written: int = 0
    levels_written: int = 0
    levels_removed: int = 0


def _read_json(path: Location) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StoreError(f"cannot read {path}: {error}") from error


def _replace_json(path: Location, document: dict) -> None:
    """Write ``document`` (as ``fastwrite`` writes metadata) to a new file and rename it over ``path``: a
    reader sees the old or the new metadata, never a part. (An object of a store at a URL is replaced
    whole by one put.)"""
    if isinstance(path, ObjectPath):
        path.write_bytes(json.dumps(document, allow_nan=False).encode())
        return
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(json.dumps(document, allow_nan=False).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _is_group(folder: Location) -> bool:
    try:
        return json.loads((folder / "zarr.json").read_text()).get("node_type") == "group"
    except (OSError, ValueError):
        return False


def stack_folders(study_dir: Location) -> list[tuple[str, str, Location]]:
    """``(series_id, k, folder)`` of every stack group of a study, in a stable order."""
    out = []
    for name, series in sorted(subfolders(study_dir), key=lambda item: item[0]):
        if not _is_group(series):
            continue
        keys = sorted(((k, p) for k, p in subfolders(series) if k.isdigit() and _is_group(p)), key=lambda i: int(i[0]))
        out.extend((name, k, p) for k, p in keys)
    return out


def add_ngff(store: str | os.PathLike | ObjectPath, levels: int | None = None) -> NgffReport:
    """Write the NGFF metadata into every stack of the complete studies of ``store`` (in place).

    Each stack group's ``zarr.json`` is replaced whole (write, then rename), only where its NGFF metadata
    differ from what this version writes, so running it again, or after an interruption, finishes the job
    and changes nothing more. Holds the store's ``IngestLock``: refuses a store another ingest is writing.
    Formats 1 and 2 are both migrated; the format stays as it was (the NGFF attributes change no array).

    ``levels``: give every stack that many downsampled levels (fewer where they would get smaller than
    ``levels.MIN_SIZE`` pixels in-plane; 0 removes them): missing level arrays are written before the
    metadata lists them, surplus ones removed after it stops listing them. ``None``: levels as they are.
    """
    if levels is not None and levels < 0:
        raise StoreError(f"levels must be 0 or more, got {levels}")
    root = store_location(store, writing=True)
    checked = L.read_root_attrs(root)[L.FORMAT_KEY] >= L.CHECKSUMS_SINCE  # missing chunks are damage
    report = NgffReport()
    with IngestLock(root):
        for study_id in sorted(L.complete_study_ids(root)):
            study_dir = root / L.STUDIES / study_id
            report.studies += 1
            for series_id, k, folder in stack_folders(study_dir):
                meta_path = folder / "zarr.json"
                document = _read_json(meta_path)
                attrs = document.get("attributes", {})
                if "affine" not in attrs:
                    raise StoreError(f"{folder} is not a spinedata stack (no geometry attributes)")
                report.stacks += 1
                if levels is None:
                    wanted = listed_levels(attrs)
                else:
                    wanted = len(level_shapes(tuple(attrs.get("shape", (0, 0, 0))), levels))
                    report.levels_written += write_levels(root, folder, wanted, checked=checked)
                new = with_ngff(attrs, f"{study_id}/{series_id}/{k}", wanted)
                if new != attrs:
                    _replace_json(meta_path, {**document, "attributes": new})
                    report.written += 1
                if levels is not None:
                    report.levels_removed += remove_levels(folder, keep=wanted)
    return report
