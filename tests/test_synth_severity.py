"""Severity is visible where a radiologist looks: sizes measured in rendered images fall with the grade."""

from __future__ import annotations

import numpy as np
import pytest

from spinedata.constants import LEVELS
from spinedata.synth.acquisition import StackPlan
from spinedata.synth.anatomy import LEVEL_DISC, SpineModel, sample_spine
from spinedata.synth.disease import (
    LEFT_FORAMINAL,
    LEFT_SUBARTICULAR,
    SPINAL,
    sample_severities,
)
from spinedata.synth.render import render_intensity
from spinedata.synth.tissues import CSF, FORAMEN_FAT, ROOT, signal_table

N_STUDIES = 12
STEP_MM = 0.25
CSF_FRACTION = 0.85
"""A pixel counts as CSF on T2 above this share of the CSF signal (fat and annulus stay below)."""


def _plane(centre: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, half_mm: float, thickness: float) -> StackPlan:
    """One slice of 0.25 mm pixels, ``2 * half_mm`` wide, centred on ``centre``."""
    n = int(2 * half_mm / STEP_MM) + 1
    corner = centre - half_mm * row_dir - half_mm * col_dir
    return StackPlan(positions=corner[None], row_dir=row_dir, col_dir=col_dir, rows=n, cols=n,
                     pixel_spacing=(STEP_MM, STEP_MM), thickness=thickness, spacing=thickness)


@pytest.fixture(scope="module")
def measurements() -> dict[str, list[tuple[int, float]]]:
    """(grade, size) per condition group, over studies drawn with balanced grades."""
    out: dict[str, list[tuple[int, float]]] = {"spinal": [], "foraminal": [], "subarticular": []}
    for i in range(N_STUDIES):
        rng = np.random.default_rng([21, i])
        severities = sample_severities(rng, "balanced")
        model = sample_spine(rng, severities)
        t2 = signal_table("T2", model.disc_degeneration, rng)
        truth = model.truth_points()
        for level in LEVELS:
            frame = model.disc_frame(LEVEL_DISC[level])
            out["spinal"].append((severities.of(SPINAL, level), _canal_width(model, truth[(SPINAL, level)], frame, t2)))
            out["foraminal"].append((severities.of(LEFT_FORAMINAL, level),
                                     _foramen_fat_area(model, truth[(LEFT_FORAMINAL, level)], frame)))
            out["subarticular"].append((severities.of(LEFT_SUBARTICULAR, level),
                                        _recess_depth(model, truth[(LEFT_SUBARTICULAR, level)], frame)))
    return out


def _canal_width(model: SpineModel, point: np.ndarray, frame, t2: np.ndarray) -> float:
    """AP distance (mm) between the front and back edges of CSF on a 3 mm mid-sagittal T2 slice through the
    spinal point, along its row (the roots inside the sac do not shorten it)."""
    stack = _plane(point, frame.posterior, -frame.normal, 15.0, 3.0)
    image = render_intensity(model, stack, t2)[0]
    bright = np.flatnonzero(image[image.shape[0] // 2] > CSF_FRACTION * t2[CSF])
    return float((bright[-1] - bright[0] + 1) * STEP_MM) if bright.size else 0.0


def _foramen_fat_area(model: SpineModel, point: np.ndarray, frame) -> float:
    """Area (mm^2) of foraminal fat on the parasagittal plane through the foramen's centre."""
    labels = model.labels_on_plane(point - 15.0 * frame.posterior + 15.0 * frame.normal, -STEP_MM * frame.normal,
                                   STEP_MM * frame.posterior, 121, 121)
    return float((labels == FORAMEN_FAT).sum() * STEP_MM**2)


def _recess_depth(model: SpineModel, point: np.ndarray, frame) -> float:
    """AP extent (mm) of the lateral recess (CSF and root) on the axial plane at the disc, through the point."""
    labels = model.labels_on_plane(point - 8.0 * frame.posterior, STEP_MM * frame.posterior, STEP_MM * frame.left, 65, 1)
    return float(np.isin(labels[:, 0], (CSF, ROOT)).sum() * STEP_MM)


@pytest.mark.parametrize("group", ["spinal", "foraminal", "subarticular"])
def test_size_falls_with_grade(measurements, group: str) -> None:
    grades, sizes = np.array(measurements[group]).T
    means = [sizes[grades == g].mean() for g in (0, 1, 2)]
    assert all((grades == g).sum() >= 10 for g in (0, 1, 2)), np.bincount(grades.astype(int))
    assert means[0] > means[1] > means[2], means
    assert means[0] > 1.4 * means[2], means


def test_neighbouring_grades_overlap(measurements) -> None:
    """Learnable but not trivial: some Normal/Mild canals are narrower than some Moderate ones."""
    grades, sizes = np.array(measurements["spinal"]).T
    assert sizes[grades == 0].min() < sizes[grades == 1].max()


def test_spinal_width_is_in_mm_range(measurements) -> None:
    grades, sizes = np.array(measurements["spinal"]).T
    assert 10.0 < sizes[grades == 0].mean() < 17.0
    assert 3.0 < sizes[grades == 2].mean() < 9.0
