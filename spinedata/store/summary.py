"""Tables describing a store (what ``spine info`` prints): per study, and per stack of one study."""

from __future__ import annotations

import pandas as pd

from spinedata.constants import ROLE_AXIAL_T2, ROLE_SAG_T1, ROLE_SAG_T2
from spinedata.errors import StoreError
from spinedata.labels import empty_labels
from spinedata.roles import plane_from_orientation
from spinedata.store.integrity import DamagedStoreError, chunk_problems
from spinedata.store.layout import LEVELS, STUDIES
from spinedata.store.objectpath import Location, subfolders
from spinedata.store.reader import Dataset, Study

ROLE_SHORT = {ROLE_SAG_T1: "sag T1", ROLE_SAG_T2: "sag T2/STIR", ROLE_AXIAL_T2: "ax T2"}
STUDY_COLUMNS = ("study_id", "series", "stacks", *ROLE_SHORT.values(), "no role", "labels", "unresolved", "warnings")
STACK_COLUMNS = (
    "series_id", "description", "role", "stack", "shape", "spacing mm", "plane", "orientation (IOP)", "flags",
    "labels",
)  # fmt: skip
"""``spacing mm`` is ``drow x dcol x slice step``."""


def table_state(dataset: Dataset, name: str) -> tuple[pd.DataFrame | None, str]:
    """``(table, "")`` for the store's ``labels`` or ``targets``; ``(None, why)`` when it was not written
    (an interrupted ingest) or is damaged (the one-line ``DamagedStoreError`` message)."""
    try:
        return getattr(dataset, name), ""
    except DamagedStoreError as error:
        return None, str(error)
    except StoreError:
        return None, "not written (re-run spine ingest)"


def table_or_none(dataset: Dataset, name: str) -> pd.DataFrame | None:
    """The store's ``labels`` or ``targets``, or None when that table was not written or is damaged."""
    return table_state(dataset, name)[0]


def missing_pieces(dataset: Dataset) -> dict[str, list[str]]:
    """Arrays of complete studies with chunks or shards missing (store-relative path: problem), by study;
    from the files and shard indexes alone, nothing decoded (``spine verify`` decodes every chunk too).
    Empty for a store of format 1, whose arrays may legitimately lack chunks."""
    if not dataset.checksums:
        return {}
    out: dict[str, list[str]] = {}
    for study_id in dataset.study_ids:
        for array in _arrays(dataset.path / STUDIES / study_id):
            try:
                problems = chunk_problems(array)
            except StoreError as error:
                problems = [str(error)]
            if problems:
                relative = array.relative_to(dataset.path).as_posix()
                out.setdefault(study_id, []).extend(f"{relative}: {p}" for p in problems)
    return out


def _arrays(study: Location) -> list[Location]:
    """The folders at ``<series>/<k>/<array>`` (and ``<series>/<k>/levels/<level>``, the downsampled
    levels) of a study folder that hold a ``zarr.json``, in order."""
    found = []
    for _, series in sorted(subfolders(study), key=lambda item: item[0]):
        for _, stack in sorted(subfolders(series), key=lambda item: item[0]):
            for name, array in sorted(subfolders(stack), key=lambda item: item[0]):
                if name == LEVELS:
                    found += [level for level_name, level in sorted(subfolders(array), key=lambda item: item[0])
                              if not level_name.startswith(".") and (level / "zarr.json").is_file()]  # fmt: skip
                elif (array / "zarr.json").is_file():
                    found.append(array)
    return found


def dataset_summary(dataset: Dataset) -> pd.DataFrame:
    """One row per complete study: series and stack counts, series per role, labels, warnings."""
    labels = table_or_none(dataset, "labels")
    if labels is None:
        labels = empty_labels()
    per_study = labels.groupby("study_id").size()
    unresolved = labels[labels["stack"] < 0].groupby("study_id").size()
    rows = []
    for study in dataset:
        roles = [s.role for s in study.series.values()]
        rows.append(
            (
                study.study_id,
                len(study.series),
                sum(len(s.stacks) for s in study.series.values()),
                *(roles.count(role) for role in ROLE_SHORT),
                roles.count(None),
                int(per_study.get(study.study_id, 0)),
                int(unresolved.get(study.study_id, 0)),
                len(study.warnings),
            )
        )
    return pd.DataFrame(rows, columns=list(STUDY_COLUMNS))


def study_stacks(study: Study, labels: pd.DataFrame | None = None) -> list[dict]:
    """One record per stack of a study, typed for JSON: ``series_id``, ``description``, ``role`` (None
    without one), ``stack``, ``shape`` (3 ints), ``spacing mm`` (``[drow, dcol, slice step]``), ``plane``,
    ``orientation (IOP)`` (6 floats), ``flags`` (a list), ``labels`` (the count)."""
    records = []
    for series in study.series.values():
        for stack in series.stacks:
            geometry = stack.geometry
            count = 0
            if labels is not None and len(labels):
                count = int(
                    ((labels["study_id"] == study.study_id) & (labels["series_id"] == series.series_id)
                     & (labels["stack"] == stack.index)).sum()
                )  # fmt: skip
            records.append({
                "series_id": series.series_id, "description": series.description, "role": series.role,
                "stack": int(stack.index), "shape": [int(v) for v in geometry.shape],
                "spacing mm": [float(v) for v in (*geometry.pixel_spacing, geometry.slice_spacing)],
                "plane": plane_from_orientation(geometry.orientation),
                "orientation (IOP)": [float(v) for v in geometry.orientation],
                "flags": [str(flag) for flag in geometry.flags], "labels": count,
            })  # fmt: skip
    return records


def study_summary(study: Study, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per stack of a study, as text for a table: shape, spacing (mm), plane, orientation (IOP),
    flags, label count (``study_stacks`` has the same, typed)."""
    rows = [
        (
            r["series_id"], r["description"], r["role"] or "", r["stack"], "x".join(str(v) for v in r["shape"]),
            "{:.3g} x {:.3g} x {:.3g}".format(*r["spacing mm"]), r["plane"],
            " ".join(f"{v:.2f}" for v in r["orientation (IOP)"]), ",".join(r["flags"]), r["labels"],
        )
        for r in study_stacks(study, labels)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(STACK_COLUMNS))
