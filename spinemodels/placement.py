"""Foraminal and subarticular points from the spinal ones: mean offsets in mm, projected into stacks.

Offsets are learned per condition and level from labelled world points (LPS mm): the mean of
``world(condition point) - world(spinal point)`` over studies that have both at that level. A point is
placed in the stack of its condition's series (Sagittal T1 for foraminal, Axial T2 for subarticular) that
contains it and whose nearest slice plane is closest (several axial slabs: the one nearest). Anything
less than that comes with a warning saying what was done instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from spinedata.conditions import CONDITION_ROLE
from spinedata.constants import CONDITIONS, LEVELS, ROLE_AXIAL_T2, ROLE_SAG_T1, ROLE_SAG_T2

SPINAL = CONDITIONS[0]
OFFSETS_FILE = "offsets.csv"
OFFSET_COLUMNS = ["condition", "level", "dx", "dy", "dz", "n"]

FALLBACK_ROLES: dict[str, tuple[str, ...]] = {
    ROLE_SAG_T1: (ROLE_SAG_T2, ROLE_AXIAL_T2),
    ROLE_AXIAL_T2: (ROLE_SAG_T2, ROLE_SAG_T1),
    ROLE_SAG_T2: (ROLE_SAG_T1, ROLE_AXIAL_T2),
}
"""Series roles tried, in order, when a study lacks the condition's own series."""


def learn_offsets(labels: pd.DataFrame, study_ids: list[str] | None = None) -> pd.DataFrame:
    """Mean offset (mm, LPS) from the spinal point to each condition's point, per condition and level.

    ``labels``: ``dataset.labels`` (world_x/y/z NaN when unresolved). ``study_ids``: use only these
    studies (the training folds when validating). Returns columns condition, level, dx, dy, dz, n with
    one row for every non-spinal condition and level; a (condition, level) without examples gets the
    condition's mean over levels (n = 0), and zeros when the condition has none at all.
    """
    world = ["world_x", "world_y", "world_z"]
    table = labels.assign(study_id=labels["study_id"].astype(str)).dropna(subset=world)
    if study_ids is not None:
        table = table[table["study_id"].isin({str(s) for s in study_ids})]
    spinal = table[table["condition"] == SPINAL].groupby(["study_id", "level"])[world].mean()
    spinal.columns = [f"{w}_spinal" for w in world]
    others = table[table["condition"] != SPINAL].join(spinal, on=["study_id", "level"])
    others = others.dropna(subset=[f"{w}_spinal" for w in world])
    for axis, w in zip("xyz", world, strict=True):
        others[f"d{axis}"] = others[w] - others[f"{w}_spinal"]
    means = others.groupby(["condition", "level"])[["dx", "dy", "dz"]].mean()
    counts = others.groupby(["condition", "level"]).size()
    rows = []
    for condition in CONDITIONS[1:]:
        overall = others[others["condition"] == condition][["dx", "dy", "dz"]].mean()
        for level in LEVELS:
            if (condition, level) in means.index:
                d = means.loc[(condition, level)]
                n = int(counts.loc[(condition, level)])
            else:
                d, n = overall.fillna(0.0), 0
            rows.append({"condition": condition, "level": level, "dx": float(d["dx"]), "dy": float(d["dy"]),
                         "dz": float(d["dz"]), "n": n})
    return pd.DataFrame(rows, columns=OFFSET_COLUMNS)


def average_offsets(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean of several offset tables (e.g. one per fold), weighted by their counts where they have any."""
    stacked = pd.concat(tables, ignore_index=True)
    weight = stacked["n"].clip(lower=0).astype(float).where(stacked["n"] > 0, 1e-9)
    out = []
    for (condition, level), group in stacked.groupby(["condition", "level"], sort=False):
        w = weight.loc[group.index]
        row = {"condition": condition, "level": level, "n": int(group["n"].sum())}
        for axis in ("dx", "dy", "dz"):
            row[axis] = float(np.average(group[axis], weights=w))
        out.append(row)
    return pd.DataFrame(out, columns=OFFSET_COLUMNS)


@dataclass(frozen=True)
class Placement:
    """Where a world point lands: series, stack, nearest slice, (row, col), how far from that plane."""

    series_id: str
    stack_index: int
    slice: int
    row: float
    col: float
    instance_number: int
    distance_mm: float
    inside: bool
    warning: str = ""


def _outside_mm(stack: Any, projection: Any) -> float:
    """How far (mm) a projection lies outside the stack's slab and pixel grid (0 when inside)."""
    n, rows, cols = stack.shape
    geometry = stack.geometry
    drow, dcol = geometry.pixel_spacing
    excess_row = max(-0.5 - projection.row, projection.row - (rows - 0.5), 0.0) * drow
    excess_col = max(-0.5 - projection.col, projection.col - (cols - 0.5), 0.0) * dcol
    excess_slab = max(abs(projection.distance_mm) - 0.5 * geometry.slice_spacing, 0.0)
    return float(np.sqrt(excess_row**2 + excess_col**2 + excess_slab**2))


def place_in_role(study: Any, world: np.ndarray, role: str) -> Placement | None:
    """The stack of a ``role`` series that contains ``world`` with the nearest slice plane.

    When no stack contains it, the stack it lies least outside of, with a warning; None when the study
    has no series of that role.
    """
    best, best_key = None, None
    for series_id, series in study.series.items():
        if series.role != role:
            continue
        for k, stack in enumerate(series.stacks):
            p = stack.project(world)
            key = (0.0 if p.inside else _outside_mm(stack, p), abs(p.distance_mm))
            if best_key is None or key < best_key:
                best_key, best = key, (str(series_id), k, stack, p)
    if best is None:
        return None
    series_id, k, stack, p = best
    warning = ""
    if not p.inside:
        warning = (f"point lies outside every {role} stack; placed in the nearest one "
                   f"({best_key[0]:.1f} mm outside)")
    return Placement(series_id, k, int(p.slice), float(p.row), float(p.col),
                     int(stack.instance_numbers[p.slice]), float(p.distance_mm), bool(p.inside), warning)


def place_point(study: Any, world: np.ndarray, condition: str) -> Placement | None:
    """Place a condition's world point in its own series, else in the best available one (with a warning).

    None only when the study has no stack at all.
    """
    role = CONDITION_ROLE[condition]
    placement = place_in_role(study, world, role)
    if placement is not None:
        return placement
    for fallback in FALLBACK_ROLES[role]:
        placement = place_in_role(study, world, fallback)
        if placement is not None:
            note = f"study has no {role} series; {condition} point placed on {fallback}"
            warning = f"{note}; {placement.warning}" if placement.warning else note
            return Placement(**{**placement.__dict__, "warning": warning})
    return None
