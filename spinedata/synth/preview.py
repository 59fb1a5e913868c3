"""A picture of one study, read back from its DICOM files and CSVs, so anyone can judge the realism.

Top row: the Sagittal T2/STIR slice holding the spinal labels and the Sagittal T1 slices through the left
and right foramina; bottom row: one Axial T2 slice per level. Labelled points are marked where the CSV puts
them (column ``x``, row ``y`` of that instance), pixels are shown with their true aspect ratio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from spinedata.constants import CONDITIONS, LEVELS, ROLE_AXIAL_T2, ROLE_SAG_T1, ROLE_SAG_T2, target_name
from spinedata.errors import OptionError

SPINAL, LEFT_FORAMINAL, RIGHT_FORAMINAL, LEFT_SUBARTICULAR, RIGHT_SUBARTICULAR = CONDITIONS
LEVEL_COLOURS = ("#e41a1c", "#ff7f00", "#ffff33", "#4daf4a", "#377eb8")
WINDOW_PERCENTILES = (0.5, 99.7)


def _read_instance(folder: Path, instance: int) -> tuple[np.ndarray, float]:
    """Pixels (rows, cols) with rescale applied, and the pixel aspect (drow / dcol)."""
    ds = pydicom.dcmread(folder / f"{instance}.dcm")
    pixels = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    drow, dcol = (float(v) for v in ds.PixelSpacing)
    return pixels, drow / dcol


def _show(ax, folder: Path, instance: int, title: str, points: pd.DataFrame) -> None:
    pixels, aspect = _read_instance(folder, instance)
    low, high = np.percentile(pixels, WINDOW_PERCENTILES)
    ax.imshow(pixels, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
    for _, row in points.iterrows():
        colour = LEVEL_COLOURS[LEVELS.index(row["level"])]
        ax.plot(row["x"], row["y"], "+", color=colour, markersize=9, markeredgewidth=1.6)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _most_common_instance(labels: pd.DataFrame) -> int:
    return int(labels["instance_number"].mode().iloc[0])


def render_preview(data_dir: str | Path, out_png: str | Path, study_id: str | None = None) -> Path:
    """Write the picture of one training study (default: the first of train.csv) to ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(data_dir)
    for name in ("train.csv", "train_label_coordinates.csv", "train_series_descriptions.csv"):
        if not (root / name).is_file():
            raise OptionError(f"{root} has no {name}; expected a dataset written by `spine synth`")
    targets = pd.read_csv(root / "train.csv", dtype={"study_id": str}).set_index("study_id")
    labels = pd.read_csv(root / "train_label_coordinates.csv", dtype={"study_id": str, "series_id": str})
    series = pd.read_csv(root / "train_series_descriptions.csv", dtype={"study_id": str, "series_id": str})
    study_id = str(study_id or targets.index[0])
    if study_id not in targets.index:
        raise OptionError(f"study {study_id} is not in {root / 'train.csv'}; pick one of {list(targets.index)[:5]}...")
    labels = labels[labels["study_id"] == study_id]
    study_series = series[series["study_id"] == study_id]

    def grade(condition: str, level: str) -> str:
        value = targets.loc[study_id, target_name(condition, level)]
        return "?" if pd.isna(value) else {"Normal/Mild": "N", "Moderate": "M", "Severe": "S"}[value]

    fig = plt.figure(figsize=(15, 9.5), facecolor="black")
    grid = fig.add_gridspec(2, 15, height_ratios=(1.9, 1.0), hspace=0.12, wspace=0.1)
    top = [fig.add_subplot(grid[0, 5 * i : 5 * i + 5]) for i in range(3)]
    bottom = [fig.add_subplot(grid[1, 3 * i : 3 * i + 3]) for i in range(5)]
    panels = ((top[0], SPINAL, (SPINAL,), ROLE_SAG_T2), (top[1], LEFT_FORAMINAL, (LEFT_FORAMINAL,), ROLE_SAG_T1),
              (top[2], RIGHT_FORAMINAL, (RIGHT_FORAMINAL,), ROLE_SAG_T1))
    for ax, condition, shown, role in panels:
        chosen = labels[labels["condition"] == condition]
        if chosen.empty:
            ax.set_axis_off()
            ax.set_title(f"{role}: no series", color="white", fontsize=8)
            continue
        folder = root / "train_images" / study_id / chosen["series_id"].iloc[0]
        instance = _most_common_instance(chosen)
        points = labels[labels["condition"].isin(shown) & (labels["instance_number"] == instance)
                        & (labels["series_id"] == chosen["series_id"].iloc[0])]
        grades = " ".join(f"{lv}:{grade(condition, lv)}" for lv in LEVELS)
        _show(ax, folder, instance, f"{role} #{instance}  {condition}\n{grades}", points)
    for ax, level in zip(bottom, LEVELS, strict=True):
        chosen = labels[labels["condition"].isin((LEFT_SUBARTICULAR, RIGHT_SUBARTICULAR)) & (labels["level"] == level)]
        if chosen.empty:
            ax.set_axis_off()
            continue
        folder = root / "train_images" / study_id / chosen["series_id"].iloc[0]
        instance = _most_common_instance(chosen)
        title = (f"{ROLE_AXIAL_T2} #{instance} {level}\nsubarticular L:{grade(LEFT_SUBARTICULAR, level)}"
                 f" R:{grade(RIGHT_SUBARTICULAR, level)}")
        _show(ax, folder, instance, title, chosen[chosen["instance_number"] == instance])
    for ax in (*top, *bottom):
        ax.title.set_color("white")
    described = ", ".join(f"{d} ({n})" for d, n in study_series["series_description"].value_counts().items())
    fig.suptitle(f"synthetic study {study_id}: {described}; + labelled points, colour = level "
                 f"(L1/L2 red ... L5/S1 blue); grades N/M/S", color="white", fontsize=10)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, facecolor="black", bbox_inches="tight")
    plt.close(fig)
    return out
