"""Pictures of one stored study (``spine show``): the mid-sagittal T2 slice with the level points, and every
level's crop per condition with the predicted probabilities.

Everything is read from the Zarr store through its geometry: points are LPS millimetres projected into the
stack shown (:meth:`StackGeometry.project`), crops are :func:`spinedata.crops.crop_around` around them, so
a point that looks right here is right in patient space. Matplotlib only (Agg backend), no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spinedata.constants import (
    CONDITIONS,
    LEVELS,
    ROLE_SAG_T1,
    ROLE_SAG_T2,
    SEVERITIES,
    SUBMISSION_COLUMNS,
    row_id,
)
from spinedata.crops import crop_around
from spinedata.errors import OptionError
from spinedata.intensity import stack_intensity_range

WORLD = ("world_x", "world_y", "world_z")
LEVEL_COLOURS = ("#e41a1c", "#ff7f00", "#ffd92f", "#4daf4a", "#377eb8")
SEVERITY_COLOURS = ("#4daf4a", "#ff7f00", "#e41a1c")
WARNING_COLOUR = "#ff00ff"
"""Frame of predicted points whose coords row carries a warning (``spine locate``'s checks or placement)."""
CONDITION_SHORT = {
    "Spinal Canal Stenosis": "spinal",
    "Left Neural Foraminal Narrowing": "L foraminal",
    "Right Neural Foraminal Narrowing": "R foraminal",
    "Left Subarticular Stenosis": "L subarticular",
    "Right Subarticular Stenosis": "R subarticular",
}
CROP_SIDE_MM = {"Spinal Canal Stenosis": 50.0, "Left Neural Foraminal Narrowing": 50.0,
                "Right Neural Foraminal Narrowing": 50.0, "Left Subarticular Stenosis": 40.0,
                "Right Subarticular Stenosis": 40.0}
"""Side of each condition's crop in the picture (mm): the reference graders' fields of view."""
CROP_SIZE = 96
"""Pixels of each crop's side in the picture."""
FIGURE_INCHES = (16.0, 9.0)
FIGURE_DPI = 100
"""``spine show`` writes a 1600 x 900 PNG."""
WINDOW_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class StudyPoints:
    """The points and probabilities drawn for one study (any may be empty)."""

    labels: pd.DataFrame       # condition, level, world_x/y/z (LPS mm): the reference points
    predicted: pd.DataFrame    # same columns (+ series_id, stack, slice when from `spine locate`)
    submission: pd.DataFrame   # row_id, normal_mild, moderate, severe


def _points_of(table: pd.DataFrame | None, study_id: str) -> pd.DataFrame:
    if table is None or len(table) == 0:
        return pd.DataFrame(columns=["condition", "level", *WORLD])
    missing = {"study_id", "condition", "level", *WORLD} - set(table.columns)
    if missing:
        raise OptionError(f"a points table needs columns study_id, condition, level, {', '.join(WORLD)}; "
                          f"missing {sorted(missing)} (write one with `spine locate`)")
    rows = table[table["study_id"].astype(str) == str(study_id)]
    return rows[np.isfinite(rows[list(WORLD)].to_numpy(float)).all(axis=1)].reset_index(drop=True)


def study_points(dataset: Any, study_id: str, *, coords: pd.DataFrame | None = None,
                 labels: pd.DataFrame | None = None, submission: pd.DataFrame | None = None) -> StudyPoints:
    """Gather what to draw: ``labels`` (default: the store's labels), ``coords`` (predictions), ``submission``."""
    if labels is None:
        labels = dataset.labels
    sub = submission if submission is not None else pd.DataFrame(columns=["row_id", *SUBMISSION_COLUMNS])
    prefix = f"{study_id}_"
    sub = sub[sub["row_id"].astype(str).str.startswith(prefix)].reset_index(drop=True)
    return StudyPoints(_points_of(labels, study_id), _points_of(coords, study_id), sub)


def _sagittal_stacks(study: Any, role: str) -> list[tuple[str, int, Any]]:
    found = [(sid, k, stack) for sid, series in study.series.items() if series.role == role
             for k, stack in enumerate(series.stacks)]
    return sorted(found, key=lambda item: (-item[2].shape[0], item[0], item[1]))


def mid_sagittal(study: Any, points: StudyPoints) -> tuple[str, int, Any, int]:
    """``(series_id, stack index, stack, slice)`` of the mid-sagittal T2 view.

    The Sagittal T2/STIR stack (Sagittal T1 when there is none) that ``spine locate`` chose when its rows
    are given, else the one of the spinal labels, else the largest; the slice nearest to the spinal points (their median), else the middle one.
    Raises ``OptionError`` for a study without a sagittal series.
    """
    candidates = _sagittal_stacks(study, ROLE_SAG_T2) or _sagittal_stacks(study, ROLE_SAG_T1)
    if not candidates:
        raise OptionError(f"study {study.study_id} has no Sagittal T2/STIR or Sagittal T1 series to show")
    series_id, k, stack = candidates[0]
    spinal = points.predicted[points.predicted["condition"] == CONDITIONS[0]]
    if not len(spinal):
        spinal = points.labels[points.labels["condition"] == CONDITIONS[0]]
    if {"series_id", "stack"} <= set(spinal.columns) and len(spinal) and spinal["stack"].notna().all():
        chosen = [c for c in candidates if c[0] == str(spinal["series_id"].iloc[0])
                  and c[1] == int(spinal["stack"].iloc[0])]
        series_id, k, stack = chosen[0] if chosen else candidates[0]
    if len(spinal):
        slices = [stack.project(xyz).slice for xyz in spinal[list(WORLD)].to_numpy(float)]
        slice_ = int(np.median(slices))
    else:
        slice_ = stack.shape[0] // 2
    return series_id, k, stack, slice_


def _window(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, WINDOW_PERCENTILES)
    return float(low), float(max(high, low + 1e-6))


def warned(table: pd.DataFrame) -> pd.Series:
    """Rows of a points table with a non-empty ``warning`` (coords.csv of ``spine locate``)."""
    if "warning" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["warning"].fillna("").astype(str).str.strip() != ""


def _draw_points(ax, stack: Any, table: pd.DataFrame, marker: str, size: float, label: str) -> None:
    """The spinal points of ``table`` on the sagittal view; points with a warning inside a red square."""
    spinal = table[table["condition"] == CONDITIONS[0]]
    first, first_warning = True, True
    for row, flag in zip(spinal.itertuples(), warned(spinal), strict=True):
        projection = stack.project(np.array([getattr(row, w) for w in WORLD], float))
        colour = LEVEL_COLOURS[LEVELS.index(row.level)]
        ax.plot(projection.col, projection.row, marker, color=colour, markersize=size, markeredgewidth=2,
                fillstyle="none", label=label if first else None)
        first = False
        if flag:
            ax.plot(projection.col, projection.row, "s", color=WARNING_COLOUR, markersize=size + 8,
                    markeredgewidth=2, fillstyle="none", label=f"{label}, with a warning" if first_warning else None)
            first_warning = False
        if marker == "o":
            ax.annotate(row.level, (projection.col, projection.row), xytext=(14, 0), textcoords="offset points",
                        color=colour, fontsize=10, fontweight="bold", va="center")


def _stack_for(study: Any, point: pd.Series, condition: str) -> Any | None:
    """The stack a point was located in (coords rows), else the first stack of the condition's series role."""
    from spinedata.conditions import CONDITION_ROLE

    if "series_id" in point.index and pd.notna(point.get("series_id")) and "stack" in point.index:
        series = study.series.get(str(point["series_id"]).split(".")[0])
        if series is not None and 0 <= int(point["stack"]) < len(series.stacks):
            return series.stacks[int(point["stack"])]
    role = CONDITION_ROLE[condition]
    best, best_distance = None, np.inf
    xyz = point[list(WORLD)].to_numpy(float)
    for series in study.series.values():
        if series.role != role:
            continue
        for stack in series.stacks:
            projection = stack.project(xyz)
            if projection.inside and abs(projection.distance_mm) < best_distance:
                best, best_distance = stack, abs(projection.distance_mm)
    return best


def _probabilities(points: StudyPoints, study_id: str, condition: str, level: str) -> np.ndarray | None:
    if not len(points.submission):
        return None
    rows = points.submission[points.submission["row_id"] == row_id(study_id, condition, level)]
    if not len(rows):
        return None
    return rows[list(SUBMISSION_COLUMNS)].to_numpy(float)[0]


def _truth_grade(truth: pd.DataFrame | None, study_id: str, condition: str, level: str) -> str | None:
    if truth is None:
        return None
    from spinedata.constants import target_name

    column = target_name(condition, level)
    rows = truth[truth["study_id"].astype(str) == str(study_id)]
    if not len(rows) or column not in rows.columns:
        return None
    value = rows[column].iloc[0]
    if isinstance(value, str):
        return value if value in SEVERITIES else None
    code = int(value)
    return SEVERITIES[code] if 0 <= code < len(SEVERITIES) else None


def render_study(dataset: Any, study_id: str, out: str | Path, *, coords: pd.DataFrame | None = None,
                 labels: pd.DataFrame | None = None, submission: pd.DataFrame | None = None,
                 truth: pd.DataFrame | None = None) -> Path:
    """Write a 1600 x 900 PNG of one study of an opened store; returns its path.

    Left: the mid-sagittal T2 slice (:func:`mid_sagittal`) with the spinal points of every level, labels
    (``labels``, default the store's; circles with the level name) and predictions (``coords`` from
    ``spine locate``; crosses). Right: one row per level, one column per condition: the middle slice of the
    crop around the predicted point (the label when there is no prediction), titled with the predicted
    probabilities of ``submission`` (N/M/S, the largest in its colour) and the true grade from ``truth``
    (train.csv form) when given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study_id = str(study_id)
    if study_id not in {str(s) for s in dataset.study_ids}:
        raise OptionError(f"study {study_id} is not a complete study of this store "
                          f"({len(dataset.study_ids)} studies, e.g. {', '.join(map(str, dataset.study_ids[:3]))})")
    study = dataset.study(study_id)
    points = study_points(dataset, study_id, coords=coords, labels=labels, submission=submission)
    series_id, k, stack, slice_ = mid_sagittal(study, points)

    figure = plt.figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    grid = figure.add_gridspec(len(LEVELS), 1 + len(CONDITIONS), width_ratios=[3.2] + [1.0] * len(CONDITIONS),
                               left=0.01, right=0.995, top=0.93, bottom=0.035, wspace=0.06, hspace=0.32)
    ax = figure.add_subplot(grid[:, 0])
    image = np.asarray(stack.read(slices=slice(slice_, slice_ + 1)), np.float32)[0]
    low, high = _window(image)
    drow, dcol = stack.geometry.pixel_spacing
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=drow / dcol, interpolation="bilinear")
    if len(points.labels):
        _draw_points(ax, stack, points.labels, "o", 13, "label")
    if len(points.predicted):
        _draw_points(ax, stack, points.predicted, "x", 10, "predicted")
    if len(points.labels) or len(points.predicted):
        ax.legend(loc="lower left", fontsize=9, framealpha=0.7)
    description = study.series[series_id].description or study.series[series_id].role
    ax.set_title(f"{description} (series {series_id}, stack {k}), slice {slice_ + 1}/{stack.shape[0]}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])

    volumes: dict[int, tuple[Any, tuple[float, float]]] = {}
    for i, level in enumerate(LEVELS):
        for j, condition in enumerate(CONDITIONS):
            cell = figure.add_subplot(grid[i, 1 + j])
            cell.set_xticks([])
            cell.set_yticks([])
            source = points.predicted if len(points.predicted) else points.labels
            rows = source[(source["condition"] == condition) & (source["level"] == level)]
            title = f"{CONDITION_SHORT[condition]} {level}"
            if len(rows) and bool(warned(rows).iloc[0]):
                title += " (!)"
                for spine in cell.spines.values():
                    spine.set_color(WARNING_COLOUR)
                    spine.set_linewidth(2.5)
            if len(rows):
                point = rows.iloc[0]
                crop_stack = _stack_for(study, point, condition)
                if crop_stack is not None:
                    key = id(crop_stack)
                    if key not in volumes:
                        volume = crop_stack.read()
                        volumes[key] = (volume, stack_intensity_range(volume))
                    volume, value_range = volumes[key]
                    crop = crop_around(volume, crop_stack.geometry, point[list(WORLD)].to_numpy(float),
                                       CROP_SIDE_MM[condition], 1, CROP_SIZE, intensity_range=value_range)
                    cell.imshow(crop[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
                    centre = (CROP_SIZE - 1) / 2
                    cell.plot(centre, centre, "+", color=LEVEL_COLOURS[i], markersize=8, markeredgewidth=1)
            else:
                cell.set_facecolor("#dddddd")
                cell.text(0.5, 0.5, "no point", ha="center", va="center", fontsize=8, transform=cell.transAxes)
            probs = _probabilities(points, study_id, condition, level)
            truth_grade = _truth_grade(truth, study_id, condition, level)
            cell.set_title(title, fontsize=8, pad=2, color=WARNING_COLOUR if title.endswith("(!)") else "black")
            if probs is not None:
                best = int(np.argmax(probs))
                text = " ".join(f"{'NMS'[c]}{probs[c]:.2f}" for c in range(3))
                cell.set_xlabel(text, fontsize=8, color=SEVERITY_COLOURS[best], labelpad=1)
            if truth_grade is not None:
                code = SEVERITIES.index(truth_grade)
                cell.text(0.02, 0.98, f"true: {'NMS'[code]}", transform=cell.transAxes, fontsize=7, va="top",
                          color="white", bbox={"facecolor": SEVERITY_COLOURS[code], "pad": 1, "linewidth": 0})
    title = f"study {study_id}: crops around the {'predicted' if len(points.predicted) else 'labelled'} points"
    if len(points.submission):
        title += "; below each, the predicted probability of N(ormal/mild), M(oderate), S(evere)"
    n_warned = int(warned(points.predicted).sum())
    if n_warned:
        title += f"; {n_warned} predicted points with a warning (magenta frames, '(!)')"
    figure.suptitle(title, fontsize=11)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=FIGURE_DPI)
    plt.close(figure)
    return out
