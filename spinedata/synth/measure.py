"""Measure, in rendered images, the sizes that each grade changes (for tests, benchmarks and docs).

Spinal: AP distance between the front and back edges of CSF on a 3 mm mid-sagittal T2 slice through the
labelled point (rendered with partial volume). Foraminal: area of foraminal fat on the parasagittal plane
through the foramen's centre. Subarticular: AP extent of the lateral recess (CSF and root) on the axial plane
of the disc through the labelled point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import binary_closing, label

from spinedata.constants import CONDITIONS, LEVELS
from spinedata.synth.acquisition import StackPlan
from spinedata.synth.anatomy import LEVEL_DISC, SpineModel, sample_spine
from spinedata.synth.disease import condition_group, sample_severities
from spinedata.synth.painting import labels_on_plane
from spinedata.synth.render import render_intensity
from spinedata.synth.tissues import CSF, FORAMEN_FAT, ROOT, signal_table

STEP_MM = 0.25
ROOT_GAP_PX = 20
"""Dark gaps up to this many pixels (5 mm: two roots side by side) inside CSF are bridged."""
CSF_FRACTION = 0.85
"""A pixel counts as CSF on T2 above this share of the CSF signal (fat and annulus stay below)."""
SPINAL, LEFT_FORAMINAL, _, LEFT_SUBARTICULAR, _ = CONDITIONS


def _slice(centre: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, half_mm: float, thickness: float) -> StackPlan:
    n = int(2 * half_mm / STEP_MM) + 1
    corner = centre - half_mm * row_dir - half_mm * col_dir
    return StackPlan(positions=corner[None], row_dir=row_dir, col_dir=col_dir, rows=n, cols=n,
                     pixel_spacing=(STEP_MM, STEP_MM), thickness=thickness, spacing=thickness)


def canal_width_mm(model: SpineModel, level: str, t2_table: np.ndarray) -> float:
    """Front-to-back CSF extent (mm) at the disc, on a rendered 3 mm mid-sagittal T2 slice: the bright run
    through (or nearest) the labelled point, with the roots inside it bridged."""
    frame = model.disc_frame(LEVEL_DISC[level])
    point = model.truth_points()[(SPINAL, level)]
    image = render_intensity(model, _slice(point, frame.posterior, -frame.normal, 15.0, 3.0), t2_table)[0]
    bright = image[image.shape[0] // 2] > CSF_FRACTION * t2_table[CSF]
    # bridge the dark roots inside the sac, then keep the bright run nearest the point (not a bright nucleus)
    bright = binary_closing(np.pad(bright, ROOT_GAP_PX), np.ones(ROOT_GAP_PX, bool))[ROOT_GAP_PX:-ROOT_GAP_PX]
    runs, n_runs = label(bright)
    if n_runs == 0:
        return 0.0
    centre = len(bright) // 2
    index = np.flatnonzero(bright)
    nearest = runs[index[np.argmin(np.abs(index - centre))]]
    return float((runs == nearest).sum() * STEP_MM)


def foramen_fat_area_mm2(model: SpineModel, level: str) -> float:
    """Foraminal fat (mm^2) on the parasagittal plane through the left foramen's centre."""
    frame = model.disc_frame(LEVEL_DISC[level])
    point = model.truth_points()[(LEFT_FORAMINAL, level)]
    n = int(30.0 / STEP_MM) + 1
    labels = labels_on_plane(model, point - 15.0 * frame.posterior + 15.0 * frame.normal, -STEP_MM * frame.normal,
                                   STEP_MM * frame.posterior, n, n)
    return float((labels == FORAMEN_FAT).sum() * STEP_MM**2)


def recess_depth_mm(model: SpineModel, level: str) -> float:
    """AP extent (mm) of the left lateral recess (CSF and root) on the disc's axial plane."""
    frame = model.disc_frame(LEVEL_DISC[level])
    point = model.truth_points()[(LEFT_SUBARTICULAR, level)]
    labels = labels_on_plane(model, point - 8.0 * frame.posterior, STEP_MM * frame.posterior, STEP_MM * frame.left,
                                   int(16.0 / STEP_MM) + 1, 1)
    return float(np.isin(labels[:, 0], (CSF, ROOT)).sum() * STEP_MM)


def grade_sizes(n_studies: int, seed: int, class_balance: str = "balanced") -> pd.DataFrame:
    """One row per study, level and condition group: ``study, group, level, grade, size``."""
    rows = []
    for i in range(n_studies):
        rng = np.random.default_rng([seed, i])
        severities = sample_severities(rng, class_balance)
        model = sample_spine(rng, severities)
        t2 = signal_table("T2", model.disc_degeneration, rng)
        for level in LEVELS:
            for condition, size in ((SPINAL, canal_width_mm(model, level, t2)),
                                    (LEFT_FORAMINAL, foramen_fat_area_mm2(model, level)),
                                    (LEFT_SUBARTICULAR, recess_depth_mm(model, level))):
                rows.append((i, condition_group(condition), level, severities.of(condition, level), size))
    return pd.DataFrame(rows, columns=["study", "group", "level", "grade", "size"])
