"""Label audit (``spine audit``): labelled points that disagree with out-of-fold keypoints.

Each labelled point (LPS mm, from ``dataset.labels``) is compared with the predicted point of its own level
and of the levels above and below (same study and condition, from coords.csv). A point is

- ``shifted`` when the prediction one level away is much closer than its own level's
  (``distance_shifted < SHIFT_RATIO * distance``) and its own is more than ``MIN_SHIFT_MM`` away: the label
  most likely names the wrong level (``suggested_level``);
- ``far`` when no prediction of that condition lies within ``FAR_MM``.

A study/condition whose shifted points all move the same way is reported with that shift for all its
points; ``correct_labels`` renames the levels of shifted points (points pushed past L1/L2 or L5/S1 are
dropped, and said so). A study/condition whose renaming would put two points at one level (only some of
its levels look shifted, and one of them onto a level that already has its point) is left as it is, with a
note: which of the two points is right needs a look at the images. Severities (``train.csv``) are not
changed: the audit checks where the points are, not what grade each level has.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from spinedata.constants import LEVELS

SHIFT_RATIO = 0.5
"""A label is shifted when a neighbouring level's prediction is closer than this fraction of its own."""
MIN_SHIFT_MM = 5.0
"""...and its own level's prediction is farther than this (mm)."""
FAR_MM = 20.0
"""A label is far off when every prediction of its condition is farther than this (mm)."""

FINDING_COLUMNS = ["study_id", "condition", "level", "kind", "shift", "suggested_level", "distance_mm",
                   "distance_shifted_mm", "series_id", "instance_number", "x", "y"]
LABEL_COLUMNS = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
WORLD = ["world_x", "world_y", "world_z"]


def audit_labels(labels: pd.DataFrame, coords: pd.DataFrame, *, shift_ratio: float = SHIFT_RATIO,
                 min_shift_mm: float = MIN_SHIFT_MM, far_mm: float = FAR_MM) -> pd.DataFrame:
    """Findings (``FINDING_COLUMNS``), one row per suspicious labelled point, for studies in ``coords``.

    Labels without world coordinates cannot be audited and are skipped (they are reported by ingest).
    """
    labels = labels.assign(study_id=labels["study_id"].astype(str)).dropna(subset=WORLD)
    coords = coords.assign(study_id=coords["study_id"].astype(str))
    predicted = {(s, c, lv): np.array([x, y, z], dtype=float) for s, c, lv, x, y, z in
                 coords[["study_id", "condition", "level", *WORLD]].itertuples(index=False)}
    labels = labels[labels["study_id"].isin(set(coords["study_id"]))]
    findings = []
    for row in labels.itertuples(index=False):
        if row.level not in LEVELS:
            continue
        i = LEVELS.index(row.level)
        point = np.array([row.world_x, row.world_y, row.world_z], dtype=float)
        dist = {}
        for shift in (-1, 0, 1):
            if 0 <= i + shift < len(LEVELS):
                p = predicted.get((row.study_id, row.condition, LEVELS[i + shift]))
                if p is not None:
                    dist[shift] = float(np.linalg.norm(point - p))
        if 0 not in dist:
            continue
        neighbours = {s: d for s, d in dist.items() if s != 0}
        shift = min(neighbours, key=neighbours.get) if neighbours else 0
        base = {"study_id": row.study_id, "condition": row.condition, "level": row.level,
                "distance_mm": dist[0], "series_id": str(row.series_id),
                "instance_number": int(row.instance_number), "x": float(row.x), "y": float(row.y)}
        if neighbours and dist[0] > min_shift_mm and neighbours[shift] < shift_ratio * dist[0]:
            findings.append({**base, "kind": "shifted", "shift": shift, "suggested_level": LEVELS[i + shift],
                             "distance_shifted_mm": neighbours[shift]})
        elif min(dist.values()) > far_mm:
            findings.append({**base, "kind": "far", "shift": 0, "suggested_level": "",
                             "distance_shifted_mm": min(neighbours.values()) if neighbours else np.nan})
    return _extend_study_shifts(labels, pd.DataFrame(findings, columns=FINDING_COLUMNS), predicted)


def _extend_study_shifts(labels: pd.DataFrame, findings: pd.DataFrame, predicted: dict) -> pd.DataFrame:
    """When a study/condition's shifted points agree on one shift, apply it to every point of that
    study/condition (an off-by-one labelling moves all levels, including the end ones with no neighbour)."""
    if findings.empty:
        return findings
    extra = []
    shifted = findings[findings["kind"] == "shifted"]
    for (study_id, condition), group in shifted.groupby(["study_id", "condition"]):
        shifts = set(group["shift"])
        if len(shifts) != 1 or len(group) < 2:
            continue
        shift = shifts.pop()
        rows = labels[(labels["study_id"] == study_id) & (labels["condition"] == condition)]
        for row in rows.itertuples(index=False):
            if row.level in set(group["level"]) or row.level not in LEVELS:
                continue
            i = LEVELS.index(row.level)
            own = predicted.get((study_id, condition, row.level))
            point = np.array([row.world_x, row.world_y, row.world_z], dtype=float)
            suggested = LEVELS[i + shift] if 0 <= i + shift < len(LEVELS) else ""
            extra.append({"study_id": study_id, "condition": condition, "level": row.level, "kind": "shifted",
                          "shift": shift, "suggested_level": suggested,
                          "distance_mm": float(np.linalg.norm(point - own)) if own is not None else np.nan,
                          "distance_shifted_mm": np.nan, "series_id": str(row.series_id),
                          "instance_number": int(row.instance_number), "x": float(row.x), "y": float(row.y)})
    out = pd.concat([findings, pd.DataFrame(extra, columns=FINDING_COLUMNS)], ignore_index=True) if extra \
        else findings
    order = {lv: i for i, lv in enumerate(LEVELS)}
    return out.sort_values(["study_id", "condition", "level"], key=lambda c: c.map(order) if c.name == "level"
                           else c).reset_index(drop=True)


def correct_labels(labels: pd.DataFrame, findings: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Labels in the competition's ``train_label_coordinates.csv`` columns with shifted levels renamed.

    Returns the corrected table and one note per change (points whose level would leave L1/L2..L5/S1 are
    dropped, with a note). A study/condition whose corrected levels would not be unique keeps its labels
    unchanged, with a note naming the level.
    """
    table = labels[LABEL_COLUMNS].copy()
    table["study_id"] = table["study_id"].astype(str)
    shifted = findings[findings["kind"] == "shifted"]
    keys = {(str(r.study_id), r.condition, r.level): r.suggested_level for r in shifted.itertuples(index=False)}
    changes: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for index, row in table.iterrows():
        key = (row["study_id"], row["condition"], row["level"])
        if key in keys:
            changes.setdefault(key[:2], []).append((index, key[2], keys[key]))
    notes, drop = [], []
    for (study_id, condition), moves in changes.items():
        group = table[(table["study_id"] == study_id) & (table["condition"] == condition)]
        levels = dict(zip(group.index, group["level"], strict=True))
        levels.update({index: new for index, _, new in moves})
        counts = Counter(level for level in levels.values() if level)
        doubled = sorted({new for _, _, new in moves if new and counts[new] > 1})
        if doubled:
            notes.append(f"study {study_id} {condition}: not corrected: the shift would put two points at "
                         f"{', '.join(doubled)} (only some levels look shifted); check the images")
            continue
        for index, old, new in moves:
            if new:
                table.at[index, "level"] = new
                notes.append(f"study {study_id} {condition}: {old} -> {new}")
            else:
                drop.append(index)
                notes.append(f"study {study_id} {condition}: {old} lies beyond L1/L2..L5/S1 after the shift; dropped")
    return table.drop(index=drop).reset_index(drop=True), notes
