"""Slice orientation (ImageOrientationPatient) and the plausibility of a slice's geometry: unit and orthogonal
direction vectors, the slice normal ``n = r x c``, positions and spacings within sane bounds."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from spinedata.errors import GeometryError

ORIENTATION_ATOL = 1e-4
"""Two IOPs (normalised) belong to one stack when every component agrees within this."""
ORTHOGONALITY_ATOL = 1e-3
"""``|r . c|`` above this (after normalising) means the IOP is not orthonormal."""
UNIT_NORM_RTOL = 1e-2
"""IOP vectors whose norm is further than this from 1 are rejected rather than silently normalised."""
MAX_ABS_COORDINATE_MM = 1e5
"""Plausible patient coordinates: every ImagePositionPatient component within +-100 m (``geometry_problem``)."""
MIN_SPACING_MM = 1e-3
"""Plausible pixel and slice spacings lie in [MIN_SPACING_MM, MAX_SPACING_MM] (1 micrometre to 1 m)."""
MAX_SPACING_MM = 1e3


def normalise_orientation(orientation) -> np.ndarray:
    """Return the IOP ``(6,)`` with both direction vectors of unit length; raise ``GeometryError``
    when a vector is (near) zero, far from unit length, or the two are not orthogonal."""
    iop = np.asarray(orientation, dtype=np.float64).reshape(-1)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise GeometryError(f"ImageOrientationPatient must be 6 finite numbers, got {list(iop)}")
    return np.array(unit_orientation(iop.tolist()))


def unit_orientation(iop: Sequence[float]) -> tuple[float, ...]:
    """``normalise_orientation`` on 6 finite floats, in plain Python (it runs once per DICOM file; the result
    of each distinct IOP is remembered, as the slices of a series share one)."""
    return _unit_orientation(tuple(float(v) for v in iop))


@functools.lru_cache(maxsize=1024)
def _unit_orientation(iop: tuple[float, ...]) -> tuple[float, ...]:
    r, c = iop[:3], iop[3:]
    nr, nc = math.sqrt(sum(v * v for v in r)), math.sqrt(sum(v * v for v in c))
    if abs(nr - 1) > UNIT_NORM_RTOL or abs(nc - 1) > UNIT_NORM_RTOL:
        raise GeometryError(
            f"ImageOrientationPatient vectors must have unit length, got norms {nr:.4f} and {nc:.4f}"
        )
    r, c = [v / nr for v in r], [v / nc for v in c]
    dot = sum(a * b for a, b in zip(r, c, strict=True))
    if abs(dot) > ORTHOGONALITY_ATOL:
        raise GeometryError(
            f"ImageOrientationPatient row and column directions are not orthogonal (r.c = {dot:.2e}, "
            f"tolerance {ORTHOGONALITY_ATOL:g})"
        )
    return (*r, *c)


def geometry_problem(position: Sequence[float] | None = None, pixel_spacing: Sequence[float] | None = None
                     ) -> str | None:  # fmt: skip
    """The one plausibility rule for a slice's geometry (orientation: ``unit_orientation``): ``None`` when
    the position's components are finite and within ``MAX_ABS_COORDINATE_MM`` and the pixel spacings are
    finite and within [``MIN_SPACING_MM``, ``MAX_SPACING_MM``], else why not (a finite but absurd value
    would give an absurd affine)."""
    if position is not None:
        if not all(math.isfinite(v) for v in position):
            return f"non-finite ImagePositionPatient {[float(v) for v in position]}"
        if not all(abs(v) <= MAX_ABS_COORDINATE_MM for v in position):
            return (f"implausible ImagePositionPatient {[float(v) for v in position]} (each component must lie "
                    f"within +-{MAX_ABS_COORDINATE_MM:g} mm)")  # fmt: skip
    if pixel_spacing is not None:
        spacing = [float(v) for v in pixel_spacing]
        if not all(math.isfinite(v) and v > 0 for v in spacing):
            return f"PixelSpacing must be positive and finite, got {spacing}"
        if not all(plausible_spacing(v) for v in spacing):
            return (f"implausible PixelSpacing {spacing} (must lie within [{MIN_SPACING_MM:g}, "
                    f"{MAX_SPACING_MM:g}] mm)")  # fmt: skip
    return None


def plausible_spacing(value: float | None) -> bool:
    """Whether ``value`` (mm) is a plausible pixel or slice spacing (finite, within [MIN, MAX]_SPACING_MM)."""
    return value is not None and math.isfinite(value) and MIN_SPACING_MM <= value <= MAX_SPACING_MM


def slice_normal(orientation) -> np.ndarray:
    """``n = r x c`` ``(3,)`` for a normalised IOP ``(6,)``."""
    iop = np.asarray(orientation, dtype=np.float64)
    r, c = iop[:3], iop[3:]
    n = np.array([r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]])  # r x c
    return n / np.linalg.norm(n)
