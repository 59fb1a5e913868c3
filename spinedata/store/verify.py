"""``spine verify``: read every array of every study and the tables, and list what is damaged or missing.

Each array is checked as the reader checks it (``spinedata.store.integrity``): every chunk of its grid
there (format 2 on), shard indexes sound, and every chunk decoded, so each chunk's CRC32C is verified. A
stack's geometry is rebuilt from its attributes and arrays, and its image must have the stack's shape;
the downsampled levels its NGFF metadata lists (``spine ngff --levels``) are checked the same way, each
with its level's shape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spinedata.errors import SpineError, StoreError
from spinedata.geometry import StackGeometry
from spinedata.store import layout as L
from spinedata.store.arraymeta import array_metadata, has_checksums
from spinedata.store.integrity import chunk_problems, read_with_zarr
from spinedata.store.layout import is_complete
from spinedata.store.levels import level_shapes
from spinedata.store.ngff import level_path, listed_levels
from spinedata.store.objectpath import Location, ObjectPath, subfolders
from spinedata.store.reader import Dataset, _attributes, _child_groups
from spinedata.store.tables import COLUMNS_ATTR

STACK_ARRAYS = (L.IMAGE, L.INSTANCE_NUMBER, L.POSITION)


@dataclass
class VerifyReport:
    """What ``verify_store`` found. ``damage`` maps a study id (or ``labels`` / ``targets``) to its
    problems, each ``<store-relative array path>: <what is wrong>``."""

    store: str
    format: int
    checksums: bool
    studies: int = 0
    arrays: int = 0
    damage: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damage

    def to_dict(self) -> dict:
        return {
            "store": self.store, "format": self.format, "checksums": self.checksums, "studies": self.studies,
            "arrays": self.arrays, "ok": self.ok, "damage": self.damage, "notes": self.notes,
        }  # fmt: skip


def check_array_whole(folder: Location, *, every_chunk: bool) -> tuple[list[str], dict | None]:
    """``(problems, metadata)`` of one array: missing chunks (when ``every_chunk``), then, if none, every
    chunk decoded (checksums verified)."""
    try:
        meta = array_metadata(folder)
        problems = chunk_problems(folder, meta) if every_chunk else []
        if not problems:
            read_with_zarr(folder)
    except StoreError as error:
        return [str(error)], None
    return problems, meta


def verify_store(path: str | os.PathLike | ObjectPath, progress: Callable[[str], None] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> VerifyReport:  # fmt: skip
    """Check every array of every complete study and of the tables (a local store or one at a URL); see
    ``VerifyReport``."""
    dataset = Dataset(path, storage_options)
    root = dataset.path
    report = VerifyReport(str(root), dataset.format, dataset.checksums)
    if not dataset.checksums:
        report.notes.append(
            f"format {dataset.format} store: written before chunk checksums (format {L.CHECKSUMS_SINCE}); only "
            "unreadable chunks are found, changed bytes and missing chunks are not: re-ingest to add them"
        )
    unchecked: set[str] = set()

    def check(key: str, folder: Location) -> dict | None:
        problems, meta = check_array_whole(folder, every_chunk=dataset.checksums)
        report.arrays += 1
        relative = folder.relative_to(root).as_posix()
        report.damage.setdefault(key, []).extend(f"{relative}: {p}" for p in problems)
        if meta is not None and dataset.checksums and not has_checksums(meta):
            unchecked.add(relative)
        return meta if not problems else None

    for study_id in dataset.study_ids:
        if progress is not None:
            progress(study_id)
        report.studies += 1
        study_folder = root / L.STUDIES / study_id
        try:
            series_ids = _child_groups(study_folder)
        except (OSError, SpineError) as error:
            report.damage.setdefault(study_id, []).append(f"{L.STUDIES}/{study_id}: {error}")
            continue
        for series_id in sorted(series_ids):
            series_folder = study_folder / series_id
            try:
                stacks = sorted((k for k in _child_groups(series_folder) if k.isdigit()), key=int)
            except (OSError, SpineError) as error:
                report.damage.setdefault(study_id, []).append(f"{series_folder.relative_to(root).as_posix()}: {error}")
                continue
            if not stacks:
                report.damage.setdefault(study_id, []).append(
                    f"{series_folder.relative_to(root).as_posix()}: a series without stacks"
                )
            for k in stacks:
                _check_stack(root, study_id, series_folder / k, check, report)
        if not report.damage.get(study_id):
            report.damage.pop(study_id, None)
    for name in (L.LABELS, L.TARGETS):
        folder = root / name
        if not (folder / "zarr.json").is_file():
            if dataset.split != "test":
                report.damage.setdefault(name, []).append(f"{name}: table missing (an interrupted ingest?)")
            continue
        columns = _attributes(folder).get(COLUMNS_ATTR)
        if not isinstance(columns, list):
            report.damage.setdefault(name, []).append(f"{name}: not a table (no {COLUMNS_ATTR!r} attribute)")
            continue
        for column in map(str, columns):
            check(name, folder / column)
        if not report.damage.get(name):
            report.damage.pop(name, None)
    incomplete = sorted(name for name, folder in subfolders(root / L.STUDIES) if not is_complete(folder))
    if incomplete:
        report.notes.append(
            f"{len(incomplete)} incomplete studies (not read; the next `spine ingest` removes them): "
            + ", ".join(incomplete[:10]) + (" ..." if len(incomplete) > 10 else "")
        )
    if unchecked:
        report.notes.append(
            f"{len(unchecked)} arrays without chunk checksums (rewritten by another tool?), e.g. {min(unchecked)}"
        )
    return report


def _check_stack(root: Location, study_id: str, folder: Location, check, report: VerifyReport) -> None:
    """The three arrays of one stack, its geometry and its image's shape; the levels it lists."""
    metas = {name: check(study_id, folder / name) for name in STACK_ARRAYS}
    relative = folder.relative_to(root).as_posix()
    problems = report.damage.setdefault(study_id, [])
    attrs = _attributes(folder)
    if metas[L.IMAGE] is not None and list(metas[L.IMAGE].get("shape", [])) != list(attrs.get("shape", [])):
        problems.append(f"{relative}/{L.IMAGE}: shape {metas[L.IMAGE].get('shape')} where the stack has "
                        f"{attrs.get('shape')}")  # fmt: skip
    n_levels = listed_levels(attrs)
    shapes = level_shapes(tuple(attrs.get("shape", (0, 0, 0))), n_levels)
    for level in range(1, n_levels + 1):
        meta = check(study_id, folder / level_path(level))
        expected = list(shapes[level - 1]) if level <= len(shapes) else "none (under the minimum size)"
        if meta is not None and list(meta.get("shape", [])) != expected:
            problems.append(f"{relative}/{level_path(level)}: shape {meta.get('shape')} where level {level} has "
                            f"{expected}")  # fmt: skip
    if metas[L.POSITION] is not None and metas[L.INSTANCE_NUMBER] is not None:
        try:
            positions = read_with_zarr(folder / L.POSITION)
            instance_numbers = read_with_zarr(folder / L.INSTANCE_NUMBER)
            StackGeometry.from_attrs(attrs, positions, instance_numbers)
        except (SpineError, ValueError, KeyError, TypeError) as error:
            problems.append(f"{relative}: geometry cannot be rebuilt ({error})")
