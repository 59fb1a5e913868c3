"""The voxel -> LPS affine of a stack from its slice positions, applying an affine, LPS -> RAS."""

from __future__ import annotations

import numpy as np

from spinedata.errors import GeometryError
from spinedata.geometry.orientation import normalise_orientation, slice_normal

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_positions(orientation, pixel_spacing, positions, single_slice_spacing: float | None = None):
    """The ``(4,4)`` voxel->LPS affine of a stack.

    orientation: IOP ``(6,)``; pixel_spacing: ``(drow, dcol)`` mm; positions: ``(n,3)`` IPP of each slice in
    stack order (ascending ``n . IPP``). With one slice the step is ``n * single_slice_spacing`` (required).
    """
    iop = normalise_orientation(orientation)
    r, c = iop[:3], iop[3:]
    drow, dcol = (float(v) for v in pixel_spacing)
    if not (drow > 0 and dcol > 0):
        raise GeometryError(f"PixelSpacing must be positive, got {(drow, dcol)}")
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if len(pos) == 0:
        raise GeometryError("a stack needs at least one slice position")
    if len(pos) == 1:
        if single_slice_spacing is None or not single_slice_spacing > 0:
            raise GeometryError(
                "a one-slice stack needs its slice spacing given explicitly "
                f"(got {single_slice_spacing!r}); pass SpacingBetweenSlices or SliceThickness"
            )
        step = slice_normal(iop) * float(single_slice_spacing)
    else:
        step = (pos[-1] - pos[0]) / (len(pos) - 1)
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = drow * c
    affine[:3, 2] = dcol * r
    affine[:3, 3] = pos[0]
    return affine


def apply_affine(affine, points) -> np.ndarray:
    """Map points ``(...,3)`` with a ``(4,4)`` affine; returns ``(...,3)`` float64."""
    a = np.asarray(affine, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    return p @ a[:3, :3].T + a[:3, 3]


def lps_to_ras(affine) -> np.ndarray:
    """The same affine with RAS output (NIfTI/nibabel convention): ``diag(-1,-1,1,1) @ A``."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
