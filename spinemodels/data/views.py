"""Cross-view points: a condition graded on another series than its own (spinal canal on Axial T2).

A labelled or located point lives in the series of its condition's role (spinal canal: Sagittal T2/STIR). A
cross-view group grades it on another role: each point is placed (``placement.place_in_role``) in the stack
of that role that contains it, nearest slice plane first. Points no such stack contains are left out (a
per-disc axial slab series often misses the level), so that view grades only what it sees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from spinedata.conditions import CONDITION_ROLE
from spinemodels.data.grading import WORLD, GradeGroup
from spinemodels.placement import place_in_role


def is_cross_view(group: GradeGroup) -> bool:
    """Whether the group grades its conditions on another series role than theirs."""
    return any(CONDITION_ROLE[c] != group.role for c in group.conditions)


def points_for_group(dataset: Any, points: pd.DataFrame, group: GradeGroup,
                     study_ids: list[str] | None = None) -> pd.DataFrame:
    """The rows of ``points`` (``POINT_COLUMNS``) of the group's conditions (and ``study_ids``), each in a
    stack of the group's role: unchanged for a group of the conditions' own role, else re-placed (rows no
    stack of that role contains are dropped)."""
    rows = points[points["condition"].isin(group.conditions)]
    if study_ids is not None:
        rows = rows[rows["study_id"].astype(str).isin({str(s) for s in study_ids})]
    if not is_cross_view(group):
        return rows
    kept = []
    for study_id, study_rows in rows.groupby(rows["study_id"].astype(str), sort=False):
        study = dataset.study(study_id)
        for row in study_rows.itertuples(index=False):
            world = np.array([getattr(row, w) for w in WORLD], dtype=np.float64)
            placed = place_in_role(study, world, group.role) if np.isfinite(world).all() else None
            if placed is None or placed.warning:
                continue
            kept.append({**row._asdict(), "study_id": study_id, "series_id": placed.series_id,
                         "stack": placed.stack_index})
    return pd.DataFrame(kept, columns=rows.columns)
