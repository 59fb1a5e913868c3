"""Labels and targets of the competition: reading the CSVs, resolving label points into patient space.

``train_label_coordinates.csv`` gives ``(study_id, series_id, instance_number, condition, level, x, y)``
with ``x`` the column and ``y`` the row of that instance's image. A label is resolved through the stack
that holds the instance: ``world = IPP_instance + x * dcol * r + y * drow * c`` (LPS mm), i.e. the
instance's own position and the stack's in-plane axes ``A[:3,2] = dcol*r``, ``A[:3,1] = drow*c``.

Ingest reads the CSVs with the ``csv`` module into column tables (``dict`` of column name -> NumPy array,
in column order) and writes them into the store; pandas (a third of a second to import) is used only by
readers (``Dataset.labels``, ``empty_labels``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinedata.constants import CONDITIONS, LEVELS, MISSING, SEVERITY_CODE, TARGETS
from spinedata.errors import DataLayoutError
from spinedata.ids import id_problem
from spinedata.report import Skipped

if TYPE_CHECKING:
    import pandas as pd

Columns = dict[str, np.ndarray]
"""A table as column name -> 1-D array (strings as ``object`` arrays of ``str``), in column order."""

LABEL_CSV_COLUMNS = ("study_id", "series_id", "instance_number", "condition", "level", "x", "y")
LABEL_COLUMNS = (*LABEL_CSV_COLUMNS, "stack", "slice", "world_x", "world_y", "world_z")
"""Columns of ``Dataset.labels``."""
TARGET_COLUMNS = ("study_id", *TARGETS)
"""Columns of ``Dataset.targets``."""
LABEL_DTYPES = {
    "study_id": "str", "series_id": "str", "instance_number": np.int64, "condition": "str", "level": "str",
    "x": np.float64, "y": np.float64, "stack": np.int64, "slice": np.int64,
    "world_x": np.float64, "world_y": np.float64, "world_z": np.float64,
}  # fmt: skip
TARGET_DTYPE = np.int8


def empty_labels() -> pd.DataFrame:
    """A labels table with no rows and the right columns and dtypes."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=LABEL_DTYPES[c]) for c in LABEL_COLUMNS})


def empty_targets() -> pd.DataFrame:
    """A targets table with no rows and the right columns and dtypes."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="str" if c == "study_id" else TARGET_DTYPE) for c in TARGET_COLUMNS})


def empty_label_columns() -> Columns:
    """``empty_labels`` as a column table."""
    return {c: np.empty(0, dtype=object if LABEL_DTYPES[c] == "str" else LABEL_DTYPES[c]) for c in LABEL_COLUMNS}


def empty_target_columns() -> Columns:
    """``empty_targets`` as a column table."""
    return {c: np.empty(0, dtype=object if c == "study_id" else TARGET_DTYPE) for c in TARGET_COLUMNS}


def _strings(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _read_csv(path: str | os.PathLike, required: tuple[str, ...]) -> dict[str, list[str]]:
    """A competition CSV as text columns (cells and names stripped, blank lines skipped, short rows padded
    with ''); ``DataLayoutError`` when it cannot be read or columns are missing."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataLayoutError(f"cannot read {path}: {error}") from error
    if not rows:
        raise DataLayoutError(f"cannot read {path}: the file is empty (no header row)")
    names = [name.strip() for name in rows[0]]
    missing = [c for c in required if c not in names]
    if missing:
        raise DataLayoutError(
            f"{path} lacks the column(s) {missing}; expected {list(required)} as in the competition's files"
        )
    columns: dict[str, list[str]] = {name: [] for name in names}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) > len(names):
            raise DataLayoutError(f"cannot read {path}: row {number} has {len(row)} fields, the header {len(names)}")
        cells = [cell.strip() for cell in row] + [""] * (len(names) - len(row))
        for name, cell in zip(names, cells, strict=True):
            columns[name].append(cell)
    return columns


def _ids_problem(study_id: str, series_id: str | None = None) -> str | None:
    """Why a CSV row's study id (and series id) cannot be store ids, or ``None`` (``spinedata.ids``)."""
    return id_problem("study id", study_id) or (None if series_id is None else id_problem("series id", series_id))


def _rows_with_ids(path: str | os.PathLike, what: str, study_ids: list[str],
                   series_ids: list[str] | None = None) -> tuple[list[int], list[Skipped]]:
    """Indices of the CSV rows whose ids can be store ids; a report line ``<what> row left out: ...`` for
    each other row."""
    keep, skipped = [], []
    for i, study_id in enumerate(study_ids):
        series_id = None if series_ids is None else series_ids[i]
        problem = _ids_problem(study_id, series_id)
        if problem:
            skipped.append(Skipped(str(path), f"{what} row left out: {problem} (row {i + 2})", study_id,
                                   series_id or ""))  # fmt: skip
        else:
            keep.append(i)
    return keep, skipped


def read_series_descriptions(path: str | os.PathLike) -> tuple[list[tuple[str, str, str]], list[Skipped]]:
    """``*_series_descriptions.csv`` -> (``(study_id, series_id, series_description)`` rows (strings); report
    lines). A row whose ids cannot be store ids (``spinedata.ids``) is left out and reported."""
    table = _read_csv(path, ("study_id", "series_id", "series_description"))
    keep, skipped = _rows_with_ids(path, "series", table["study_id"], table["series_id"])
    rows = [(table["study_id"][i], table["series_id"][i], table["series_description"][i]) for i in keep]
    return rows, skipped


def _number(text: str) -> float:
    """A CSV number (NaN when it is not one), as ``pandas.to_numeric(errors='coerce')`` reads it."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_label_coordinates(path: str | os.PathLike) -> tuple[Columns, list[Skipped]]:
    """``train_label_coordinates.csv`` -> (label columns ``LABEL_CSV_COLUMNS``, typed; report lines).

    A row is left out (and reported) when its ids cannot be store ids (``spinedata.ids``), its instance
    number, x or y is not a number, or its condition or level is not one of the competition's.
    """
    table = _read_csv(path, LABEL_CSV_COLUMNS)
    kept: dict[str, list] = {c: [] for c in LABEL_CSV_COLUMNS}
    skipped = []
    conditions, levels = set(CONDITIONS), set(LEVELS)
    for i, row in enumerate(zip(*(table[c] for c in LABEL_CSV_COLUMNS), strict=True)):
        study_id, series_id, instance_text, condition, level, x_text, y_text = row
        instance, x, y = _number(instance_text), _number(x_text), _number(y_text)
        problem = _ids_problem(study_id, series_id)
        if problem:
            reason = f"label row left out: {problem}"
        elif not math.isfinite(instance) or instance != int(instance):
            reason = "label row left out: instance_number not an integer"
        elif not (math.isfinite(x) and math.isfinite(y)):
            reason = "label row left out: x/y not a number"
        elif condition not in conditions:
            reason = "label row left out: unknown condition"
        elif level not in levels:
            reason = "label row left out: unknown level"
        else:
            for column, value in zip(LABEL_CSV_COLUMNS, (study_id, series_id, int(instance), condition, level, x, y),
                                     strict=True):
                kept[column].append(value)
            continue
        skipped.append(Skipped(
            path=str(path),
            reason=f"{reason} (row {i + 2}: {condition!r} {level!r} instance {instance_text!r} x {x_text!r} "
                   f"y {y_text!r})",
            study_id=study_id, series_id=series_id,
        ))  # fmt: skip
    out = {c: _strings(kept[c]) for c in ("study_id", "series_id", "condition", "level")}
    out["instance_number"] = np.asarray(kept["instance_number"], dtype=np.int64)
    out["x"] = np.asarray(kept["x"], dtype=np.float64)
    out["y"] = np.asarray(kept["y"], dtype=np.float64)
    return {c: out[c] for c in LABEL_CSV_COLUMNS}, skipped


def read_targets(path: str | os.PathLike) -> tuple[Columns, list[Skipped]]:
    """``train.csv`` -> (targets: study_id + 25 int8 columns 0/1/2, -1 missing; report lines).

    An empty cell is missing (-1). A value that is not a severity name becomes -1 with a report line; a
    target column missing from the file is all -1 with one report line. A row whose study id cannot be a
    store id (``spinedata.ids``) is left out with a report line.
    """
    table = _read_csv(path, ("study_id",))
    keep, skipped = _rows_with_ids(path, "target", table["study_id"])
    table = {name: [values[i] for i in keep] for name, values in table.items()}
    study_ids = table["study_id"]
    out: Columns = {"study_id": _strings(study_ids)}
    for column in TARGETS:
        codes = np.full(len(study_ids), MISSING, dtype=TARGET_DTYPE)
        if column not in table:
            skipped.append(Skipped(path=str(path), reason=f"target column missing: {column} set to -1 for every study"))
            out[column] = codes
            continue
        for i, value in enumerate(table[column]):
            if value == "":
                continue
            code = SEVERITY_CODE.get(value)
            if code is None:
                skipped.append(Skipped(path=str(path), reason=f"unknown severity: {value!r} in {column}, set to -1",
                                       study_id=study_ids[i]))  # fmt: skip
            else:
                codes[i] = code
        out[column] = codes
    return out, skipped


StackLookup = Callable[[str, str], "Sequence[tuple[int, Any]] | str"]
"""``lookup(study_id, series_id)``: the series' stacks as ``(stack index, geometry)`` pairs (anything with
``affine``, ``positions`` and ``instance_numbers``, e.g. a ``StackGeometry`` or a store ``Stack``), or the
reason it has none."""


def store_lookup(dataset) -> StackLookup:
    """A ``StackLookup`` over an open spinedata Dataset."""
    available = set(dataset.study_ids)
    studies: dict[str, Any] = {}

    def lookup(study_id: str, series_id: str):
        if study_id not in available:
            return "study not in the store"
        if study_id not in studies:
            studies[study_id] = dataset.study(study_id)
        series = studies[study_id].series.get(series_id)
        if series is None:
            return "series not in the store"
        return [(stack.index, stack) for stack in series.stacks]

    return lookup


def resolve_labels(labels: Columns, stacks: StackLookup | Any, source: str | Path = "") -> tuple[Columns, list[Skipped]]:
    """Add ``stack, slice, world_x, world_y, world_z`` to label columns (``LABEL_CSV_COLUMNS``).

    ``stacks``: a ``StackLookup``, or an open spinedata Dataset. A label whose study, series or instance
    has no stack keeps its row with ``stack = slice = -1`` and NaN world coordinates, plus one report line.
    """
    lookup = stacks if callable(stacks) else store_lookup(stacks)
    out = {c: np.asarray(labels[c]) for c in LABEL_CSV_COLUMNS}
    n = len(out["study_id"])
    stack_index = np.full(n, -1, dtype=np.int64)
    slice_index = np.full(n, -1, dtype=np.int64)
    world = np.full((n, 3), np.nan)
    skipped: list[Skipped] = []
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(out["study_id"], out["series_id"], strict=True)):
        groups.setdefault((str(key[0]), str(key[1])), []).append(i)
    for (study_id, series_id), rows in groups.items():
        def report(reason: str, indices, study_id=study_id, series_id=series_id) -> None:
            for i in indices:
                skipped.append(Skipped(
                    path=str(source),
                    reason=f"label not resolvable: {reason} ({out['condition'][i]} {out['level'][i]})",
                    study_id=study_id, series_id=series_id,
                ))  # fmt: skip

        found = lookup(study_id, series_id)
        if isinstance(found, str):
            report(found, rows)
            continue
        where = _instance_index(found)
        for i in rows:
            instance = int(out["instance_number"][i])
            hit = where.get(instance)
            if hit is None:
                report(f"instance {instance} not in any stack of the series", [i])
                continue
            index, geometry, k = hit
            affine = geometry.affine
            world[i] = geometry.positions[k] + out["x"][i] * affine[:3, 2] + out["y"][i] * affine[:3, 1]
            stack_index[i] = index
            slice_index[i] = k
    out["stack"] = stack_index
    out["slice"] = slice_index
    out["world_x"], out["world_y"], out["world_z"] = world[:, 0], world[:, 1], world[:, 2]
    return out, skipped


def _instance_index(stacks: Sequence[tuple[int, Any]]) -> dict[int, tuple[int, Any, int]]:
    """Instance number -> ``(stack index, geometry, slice)`` of the first stack (and slice) holding it."""
    where: dict[int, tuple[int, Any, int]] = {}
    for index, geometry in stacks:
        for k, instance in enumerate(np.asarray(geometry.instance_numbers).tolist()):
            where.setdefault(int(instance), (index, geometry, k))
    return where
