"""Bringing a store written by an earlier version up to this version's metadata, in place.

``add_ngff`` (``spine ngff STORE``): the OME-Zarr (NGFF 0.5) attributes of every stack
(``spinedata.store.ngff``), for stores of format 1 or 2 written without them.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from spinedata.errors import StoreError
from spinedata.store import layout as L
from spinedata.store.ngff import with_ngff
from spinedata.store.writer import IngestLock


@dataclass
class NgffReport:
    """What ``add_ngff`` did: stacks seen, stacks whose metadata it (re)wrote, studies visited."""

    studies: int = 0
    stacks: int = 0
    written: int = 0


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StoreError(f"cannot read {path}: {error}") from error


def _replace_json(path: Path, document: dict) -> None:
    """Write ``document`` (as ``fastwrite`` writes metadata) to a new file and rename it over ``path``: a
    reader sees the old or the new metadata, never a part."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(json.dumps(document, allow_nan=False).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _is_group(folder: Path) -> bool:
    try:
        return json.loads((folder / "zarr.json").read_text()).get("node_type") == "group"
    except (OSError, ValueError):
        return False


def stack_folders(study_dir: Path) -> list[tuple[str, str, Path]]:
    """``(series_id, k, folder)`` of every stack group of a study, in a stable order."""
    out = []
    for series in sorted(p for p in study_dir.iterdir() if p.is_dir() and _is_group(p)):
        keys = sorted((p for p in series.iterdir() if p.name.isdigit() and _is_group(p)), key=lambda p: int(p.name))
        out.extend((series.name, k.name, k) for k in keys)
    return out


def add_ngff(store: str | os.PathLike) -> NgffReport:
    """Write the NGFF metadata into every stack of the complete studies of ``store`` (in place).

    Each stack group's ``zarr.json`` is replaced whole (write, then rename), only where its NGFF metadata
    differ from what this version writes, so running it again, or after an interruption, finishes the job
    and changes nothing more. Holds the store's ``IngestLock``: refuses a store another ingest is writing.
    Formats 1 and 2 are both migrated; the format stays as it was (the NGFF attributes change no array).
    """
    root = Path(store)
    L.read_root_attrs(root)
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
                new = with_ngff(attrs, f"{study_id}/{series_id}/{k}")
                if new != attrs:
                    _replace_json(meta_path, {**document, "attributes": new})
                    report.written += 1
    return report
