"""Labels and targets of the competition: reading the CSVs, resolving label points into patient space.

``train_label_coordinates.csv`` gives ``(study_id, series_id, instance_number, condition, level, x, y)``
with ``x`` the column and ``y`` the row of that instance's image. A label is resolved through the stack
that holds the instance: ``world = IPP_instance + x * dcol * r + y * drow * c`` (LPS mm), i.e. the
instance's own position and the stack's in-plane axes ``A[:3,2] = dcol*r``, ``A[:3,1] = drow*c``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from spinedata.constants import CONDITIONS, LEVELS, MISSING, SEVERITY_CODE, TARGETS
from spinedata.dicomio import Skipped
from spinedata.errors import DataLayoutError

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
    return pd.DataFrame({c: pd.Series(dtype=LABEL_DTYPES[c]) for c in LABEL_COLUMNS})


def empty_targets() -> pd.DataFrame:
    """A targets table with no rows and the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype="str" if c == "study_id" else TARGET_DTYPE) for c in TARGET_COLUMNS})


def _read_csv(path: str | os.PathLike, required: tuple[str, ...]) -> pd.DataFrame:
    """A competition CSV with every column as text; ``DataLayoutError`` when columns are missing."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataLayoutError(f"cannot read {path}: {error}") from error
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataLayoutError(
            f"{path} lacks the column(s) {missing}; expected {list(required)} as in the competition's files"
        )
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    return frame


def read_series_descriptions(path: str | os.PathLike) -> pd.DataFrame:
    """``*_series_descriptions.csv`` -> DataFrame ``study_id, series_id, series_description`` (strings)."""
    return _read_csv(path, ("study_id", "series_id", "series_description"))[
        ["study_id", "series_id", "series_description"]
    ]


def read_label_coordinates(path: str | os.PathLike) -> tuple[pd.DataFrame, list[Skipped]]:
    """``train_label_coordinates.csv`` -> (labels with typed columns, report lines for rows left out).

    A row is left out (and reported) when its instance number, x or y is not a number, or its condition
    or level is not one of the competition's.
    """
    frame = _read_csv(path, LABEL_CSV_COLUMNS)[list(LABEL_CSV_COLUMNS)].copy()
    instance = pd.to_numeric(frame["instance_number"], errors="coerce")
    x = pd.to_numeric(frame["x"], errors="coerce")
    y = pd.to_numeric(frame["y"], errors="coerce")
    reasons = pd.Series("", index=frame.index)
    reasons[~frame["level"].isin(LEVELS)] = "label row left out: unknown level"
    reasons[~frame["condition"].isin(CONDITIONS)] = "label row left out: unknown condition"
    reasons[~np.isfinite(x) | ~np.isfinite(y)] = "label row left out: x/y not a number"
    reasons[instance.isna() | (instance != instance.round())] = "label row left out: instance_number not an integer"
    bad = reasons != ""
    skipped = [
        Skipped(
            path=str(path),
            reason=f"{reasons[i]} (row {i + 2}: {row.condition!r} {row.level!r} "
            f"instance {row.instance_number!r} x {row.x!r} y {row.y!r})",
            study_id=row.study_id,
            series_id=row.series_id,
        )
        for i, row in frame[bad].iterrows()
    ]
    good = frame[~bad].copy()
    good["instance_number"] = instance[~bad].astype(np.int64)
    good["x"] = x[~bad].astype(np.float64)
    good["y"] = y[~bad].astype(np.float64)
    return good.reset_index(drop=True), skipped


def read_targets(path: str | os.PathLike) -> tuple[pd.DataFrame, list[Skipped]]:
    """``train.csv`` -> (targets: study_id + 25 int8 columns 0/1/2, -1 missing; report lines).

    An empty cell is missing (-1). A value that is not a severity name becomes -1 with a report line; a
    target column missing from the file is all -1 with one report line.
    """
    frame = _read_csv(path, ("study_id",))
    out = pd.DataFrame({"study_id": frame["study_id"].astype("str")})
    skipped = []
    for column in TARGETS:
        if column not in frame.columns:
            skipped.append(Skipped(path=str(path), reason=f"target column missing: {column} set to -1 for every study"))
            out[column] = np.full(len(frame), MISSING, dtype=TARGET_DTYPE)
            continue
        values = frame[column]
        codes = values.map(SEVERITY_CODE)
        unknown = values.ne("") & codes.isna()
        for i in np.flatnonzero(unknown.to_numpy()):
            skipped.append(
                Skipped(
                    path=str(path),
                    reason=f"unknown severity: {values.iloc[i]!r} in {column}, set to -1",
                    study_id=str(frame["study_id"].iloc[i]),
                )
            )
        out[column] = codes.fillna(MISSING).astype(TARGET_DTYPE)
    return out.reset_index(drop=True), skipped


def resolve_labels(labels: pd.DataFrame, dataset, source: str | Path = "") -> tuple[pd.DataFrame, list[Skipped]]:
    """Add ``stack, slice, world_x, world_y, world_z`` to labels (columns of ``LABEL_CSV_COLUMNS``).

    ``dataset`` is an open ``spinedata`` Dataset. A label whose study, series or instance is not in the
    store keeps its row with ``stack = slice = -1`` and NaN world coordinates, plus one report line.
    """
    out = labels[list(LABEL_CSV_COLUMNS)].copy().reset_index(drop=True)
    stack_index = np.full(len(out), -1, dtype=np.int64)
    slice_index = np.full(len(out), -1, dtype=np.int64)
    world = np.full((len(out), 3), np.nan)
    skipped: list[Skipped] = []
    available = set(dataset.study_ids)
    studies: dict[str, object] = {}
    for (study_id, series_id), rows in out.groupby(["study_id", "series_id"], sort=False):
        def report(reason: str, indices, study_id=study_id, series_id=series_id) -> None:
            for i in indices:
                skipped.append(
                    Skipped(
                        path=str(source),
                        reason=f"label not resolvable: {reason} ({out.at[i, 'condition']} {out.at[i, 'level']})",
                        study_id=study_id,
                        series_id=series_id,
                    )
                )

        if study_id not in available:
            report("study not in the store", rows.index)
            continue
        if study_id not in studies:
            studies[study_id] = dataset.study(study_id)
        series = studies[study_id].series.get(series_id)
        if series is None:
            report("series not in the store", rows.index)
            continue
        for i, row in rows.iterrows():
            found = series.locate_instance(int(row.instance_number))
            if found is None:
                report(f"instance {row.instance_number} not in any stack of the series", [i])
                continue
            stack, k = found
            affine = stack.affine
            world[i] = stack.positions[k] + row.x * affine[:3, 2] + row.y * affine[:3, 1]
            stack_index[i] = stack.index
            slice_index[i] = k
    out["stack"] = stack_index
    out["slice"] = slice_index
    out["world_x"], out["world_y"], out["world_z"] = world[:, 0], world[:, 1], world[:, 2]
    return out, skipped
