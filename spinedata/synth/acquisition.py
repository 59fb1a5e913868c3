"""Series geometry chosen around the spine the way a technologist would plan it.

Sagittal series cover both foramina with 15-20 slices of 3-4.5 mm plus a gap; the Axial T2 series is either
one contiguous stack through L1-S1 or one slab of 3-6 slices per disc, parallel to that disc, all in the
same series. Every plan is exact: each slice has its own position (IPP), the orientation (IOP) and the pixel
spacing, and rendering samples the anatomy at exactly those voxel centres.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from spinedata.constants import LEVELS, ROLE_AXIAL_T2, ROLE_SAG_T1, ROLE_SAG_T2
from spinedata.synth.anatomy import LEVEL_DISC, SpineModel, rotation_matrix
from spinedata.synth.options import SynthOptions

PLANNING_ERROR_DEG = 3.0
"""Largest misalignment between a planned slice orientation and the patient's true anatomy."""
SLAB_ERROR_DEG = 2.0
FORAMEN_MARGIN_MM = 8.0
RESCALED_FRACTION = 0.3
"""Share of series stored with a RescaleSlope other than 1 (most MR series have slope 1, intercept 0)."""
AXIAL_MARGIN_MM = 12.0
"""A contiguous axial stack reaches this far beyond the L1/L2 and L5/S1 discs."""


@dataclass(frozen=True)
class StackPlan:
    """One regular stack: slices along ``normal`` in ascending position, all with the same grid."""

    positions: np.ndarray  # (n, 3) IPP of each slice (centre of its first pixel), LPS mm
    row_dir: np.ndarray  # (3,) IOP[0:3]: direction of increasing column
    col_dir: np.ndarray  # (3,) IOP[3:6]: direction of increasing row
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]  # (drow, dcol) mm
    thickness: float  # mm
    spacing: float  # mm between neighbouring slice centres

    @functools.cached_property
    def normal(self) -> np.ndarray:
        """Unit normal (3,) ``row_dir x col_dir``: the direction of increasing slice position."""
        return np.cross(self.row_dir, self.col_dir)

    @property
    def orientation(self) -> np.ndarray:
        """The IOP (6,)."""
        return np.concatenate([self.row_dir, self.col_dir])

    def voxel_centres(self, index: int, offset_mm: float = 0.0) -> np.ndarray:
        """Patient-space centres (rows, cols, 3) of slice ``index``, moved ``offset_mm`` along the normal."""
        drow, dcol = self.pixel_spacing
        rr = np.arange(self.rows, dtype=float)[:, None, None] * drow * self.col_dir
        cc = np.arange(self.cols, dtype=float)[None, :, None] * dcol * self.row_dir
        return self.positions[index] + offset_mm * self.normal + rr + cc


@dataclass(frozen=True)
class SeriesPlan:
    """One DICOM series: its role, contrast, stacks and how its pixel values are stored."""

    description: str
    contrast: str  # "T1", "T2" or "STIR"
    series_id: str
    series_number: int
    stacks: tuple[StackPlan, ...]
    reverse_instances: bool  # instance numbers run against position
    rescale_slope: float
    rescale_intercept: float
    value_scale: float  # real-world value of unit intensity (CSF on T2)
    noise: float
    echo_time: float
    repetition_time: float

    @property
    def n_slices(self) -> int:
        return sum(len(stack.positions) for stack in self.stacks)

    def slices(self) -> list[tuple[int, int, int]]:
        """``(instance_number, stack index, slice index)`` for every slice of the series."""
        order = [(k, i) for k, stack in enumerate(self.stacks) for i in range(len(stack.positions))]
        numbers = range(len(order), 0, -1) if self.reverse_instances else range(1, len(order) + 1)
        return [(n, k, i) for n, (k, i) in zip(numbers, order, strict=True)]


def _grid(rng: np.random.Generator, matrices: tuple[int, ...], fov: tuple[float, float],
          non_square_fraction: float, short_side: float) -> tuple[int, int, float, float]:
    """Matrix and pixel spacing: ``(rows, cols, drow, dcol)``; sometimes rectangular or non-square."""
    matrix = int(rng.choice(matrices))
    spacing = rng.uniform(*fov) / matrix
    rows = cols = matrix
    drow = dcol = spacing
    if rng.random() < non_square_fraction:
        if rng.random() < 0.5:  # rectangular field of view: fewer columns, same pixels
            cols = max(16, int(round(matrix * short_side / 16)) * 16)
        else:  # non-square pixels: coarser between rows
            drow = spacing * rng.uniform(1.1, 1.35)
            rows = int(round(matrix * spacing / drow))
    return rows, cols, float(drow), float(dcol)


def _stack(centre: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, n: int, spacing: float,
           thickness: float, grid: tuple[int, int, float, float]) -> StackPlan:
    rows, cols, drow, dcol = grid
    normal = np.cross(row_dir, col_dir)
    offsets = (np.arange(n) - (n - 1) / 2) * spacing
    corner = -(cols - 1) / 2 * dcol * row_dir - (rows - 1) / 2 * drow * col_dir
    positions = centre + offsets[:, None] * normal + corner
    return StackPlan(positions=positions, row_dir=row_dir, col_dir=col_dir, rows=rows, cols=cols,
                     pixel_spacing=(drow, dcol), thickness=float(thickness), spacing=float(spacing))


def _tilted(rng: np.random.Generator, rotation: np.ndarray, max_deg: float) -> np.ndarray:
    return rotation @ rotation_matrix(rng.uniform(-max_deg, max_deg, 3))


def plan_sagittal(rng: np.random.Generator, model: SpineModel, options: SynthOptions) -> StackPlan:
    """A sagittal stack over both foramina: columns run posterior, rows toward the feet."""
    frame = _tilted(rng, model.rotation, PLANNING_ERROR_DEG)
    row_dir, col_dir = frame @ np.array([0.0, 1.0, 0.0]), frame @ np.array([0.0, 0.0, -1.0])
    s_centre = 0.5 * (model.disc_mid[LEVEL_DISC[LEVELS[0]]] + model.disc_mid[LEVEL_DISC[LEVELS[-1]]])
    centre = model.unstraighten(rng.uniform(-3.0, 3.0), s_centre + rng.uniform(-15.0, 15.0), rng.uniform(5.0, 30.0))
    thickness = rng.uniform(3.0, 4.5)
    spacing = thickness + rng.uniform(0.3, 1.0)
    low, high = options.sagittal_slices
    n = int(rng.integers(low, high + 1))
    n = max(n, int(np.ceil(2 * (model.foramen_x + FORAMEN_MARGIN_MM) / spacing)) + 1)
    grid = _grid(rng, options.sagittal_matrices, options.sagittal_fov_mm, options.non_square_fraction, 0.8)
    return _stack(centre, row_dir, col_dir, n, spacing, thickness, grid)


def plan_axial(rng: np.random.Generator, model: SpineModel, options: SynthOptions) -> tuple[StackPlan, ...]:
    """Axial T2: one slab per disc parallel to it (in a random order), or one contiguous stack."""
    grid = _grid(rng, options.axial_matrices, options.axial_fov_mm, options.non_square_fraction, 0.85)
    thickness = rng.uniform(3.0, 4.0)
    frames = [model.disc_frame(LEVEL_DISC[level]) for level in LEVELS]
    if rng.random() < options.slab_fraction:
        spacing = thickness + rng.uniform(0.0, 0.5)
        stacks = []
        for frame in frames:
            tilt = rotation_matrix(rng.uniform(-SLAB_ERROR_DEG, SLAB_ERROR_DEG, 3))
            row_dir, col_dir = tilt @ frame.left, tilt @ frame.posterior
            centre = frame.centre + frame.posterior * rng.uniform(10.0, 30.0) + frame.left * rng.uniform(-5, 5)
            centre = centre + frame.normal * rng.uniform(-1.0, 1.0)
            n = int(rng.integers(options.slab_slices[0], options.slab_slices[1] + 1))
            stacks.append(_stack(centre, row_dir, col_dir, n, spacing, thickness, grid))
        return tuple(stacks if rng.random() < 0.5 else stacks[::-1])
    normal = np.mean([f.normal for f in frames], axis=0)
    frame = _tilted(rng, np.eye(3), SLAB_ERROR_DEG)
    normal = frame @ (normal / np.linalg.norm(normal))
    left = frames[2].left - np.dot(frames[2].left, normal) * normal
    row_dir = left / np.linalg.norm(left)
    col_dir = np.cross(normal, row_dir)
    along = [np.dot(f.centre, normal) for f in frames]
    low, high = min(along) - AXIAL_MARGIN_MM, max(along) + AXIAL_MARGIN_MM
    spacing = thickness + rng.uniform(0.0, 0.5)
    n = int(np.ceil((high - low) / spacing)) + 1
    middle = np.mean([f.centre for f in frames], axis=0)
    centre = middle + (0.5 * (low + high) - np.dot(middle, normal)) * normal
    centre = centre + frames[2].posterior * rng.uniform(10.0, 30.0)
    return (_stack(centre, row_dir, col_dir, n, spacing, thickness, grid),)


ROLE_CONTRAST = {ROLE_SAG_T1: "T1", ROLE_SAG_T2: "T2", ROLE_AXIAL_T2: "T2"}
ECHO_REPETITION = {"T1": (10.0, 550.0), "T2": (100.0, 3500.0), "STIR": (60.0, 4000.0)}


def plan_series(rng: np.random.Generator, model: SpineModel, options: SynthOptions, role: str,
                series_id: str, series_number: int) -> SeriesPlan:
    """Geometry, contrast and storage of one series of the given role."""
    contrast = ROLE_CONTRAST[role]
    if role == ROLE_SAG_T2 and rng.random() < options.stir_fraction:
        contrast = "STIR"
    stacks = (plan_sagittal(rng, model, options),) if role != ROLE_AXIAL_T2 else plan_axial(rng, model, options)
    slope = float(rng.choice([0.5, 2.0, round(rng.uniform(0.3, 4.0), 4)]))
    intercept = float(rng.choice([0.0, -round(rng.uniform(1.0, 200.0), 2)]))
    if rng.random() >= RESCALED_FRACTION:
        slope, intercept = 1.0, 0.0
    echo, repetition = ECHO_REPETITION[contrast]
    return SeriesPlan(
        description=role, contrast=contrast, series_id=series_id, series_number=series_number, stacks=stacks,
        reverse_instances=bool(rng.random() < options.reverse_instance_fraction), rescale_slope=slope,
        rescale_intercept=intercept, value_scale=float(rng.uniform(800.0, 3000.0)),
        noise=float(options.noise * rng.uniform(0.7, 1.3)), echo_time=echo * rng.uniform(0.9, 1.1),
        repetition_time=repetition * rng.uniform(0.9, 1.1),
    )
