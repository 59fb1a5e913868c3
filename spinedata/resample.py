"""Resampling a stack that is not one regular grid (slices ``nonuniform``, ``missing_slices`` or ``shear``)
onto one: the regular grid (``uniform_grid``) and the interpolation (``resample_uniform``), for exports that
need a single affine (``spinedata.export``)."""

from __future__ import annotations

import importlib

import numpy as np

from spinedata.geometry import StackGeometry, base_gap

SNAP_SLICE = 1e-6
"""A target slice within this fraction of a slice from an acquired one copies it (no blending)."""
SNAP_PIXELS = 1e-3
"""An in-plane offset (pixels) below this between a target slice and its source is taken as none."""


def uniform_grid(geometry: StackGeometry) -> np.ndarray:
    """The ``(4,4)`` LPS affine of the regular grid ``resample_uniform`` writes: origin the first slice's
    IPP, rows and columns as acquired, slice step ``d * n`` (along the normal, so without shear) with
    ``d`` = the first-to-last depth divided into whole base steps (``geometry.base_gap``: the acquired step
    when slices are missing, else the median gap). The number of slices is ``uniform_slice_count(geometry)``."""
    affine = np.array(geometry.affine)
    n = geometry.normal
    count = uniform_slice_count(geometry)
    if count > 1:
        depth = geometry.positions @ n
        affine[:3, 0] = n * (depth[-1] - depth[0]) / (count - 1)
    else:
        affine[:3, 0] = n * float(geometry.affine[:3, 0] @ n)
    return affine


def uniform_slice_count(geometry: StackGeometry) -> int:
    """Slices of the regular grid of ``uniform_grid``: ``round((depth_last - depth_first) / base) + 1``."""
    if geometry.n_slices == 1:
        return 1
    depth = geometry.positions @ geometry.normal
    gaps = np.diff(depth)
    return max(1, int(round((depth[-1] - depth[0]) / base_gap(gaps)))) + 1


def resample_uniform(volume: np.ndarray, geometry: StackGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate an irregular stack onto the regular grid of ``uniform_grid``: ``(volume, affine)``.

    Each target slice lies on the plane at depth ``depth_first + k * d`` along the normal ``n``. Its value
    at row ``r``, column ``c`` is the stack's value at that world point, found as ``voxel_to_world`` places
    the acquired slices (their real positions, linear between neighbours):

    * along ``n``: linear interpolation between the two acquired slices around the plane (a target plane
      within 1e-6 of a slice copies it, so the first and last slices and, with missing slices, every
      acquired slice are kept exactly);
    * in-plane, only for a stack whose slices are shifted in-plane (``shear``, e.g. gantry tilt): each of
      the two slices is sampled bilinearly at the shifted position; within half a pixel beyond the edge
      pixels' centres (their extent) a point takes the edge value, farther outside the acquired field of
      view it is 0 (the grid keeps the acquired rows and columns; it does not grow to hold the shift).

    The result is float32 (interpolated values), the first slice's IPP stays the origin, rows and columns
    keep their spacing and direction. A stack without irregular flags comes back unchanged in value
    (as float32) on a grid equal to its own up to the 1 % the flags allow.
    """
    ndimage = importlib.import_module("scipy.ndimage")  # scipy is a core dependency; loaded only here
    source = np.asarray(volume)
    affine = uniform_grid(geometry)
    count = uniform_slice_count(geometry)
    slices, rows, cols = geometry.shape
    out = np.zeros((count, rows, cols), dtype=np.float32)
    origins = geometry.positions[0] + np.arange(count)[:, None] * affine[:3, 0]
    voxels = geometry.world_to_voxel(origins)  # (count, 3): source slice, and row/col offset of each plane
    for k, (s, drow, dcol) in enumerate(voxels):
        s = float(np.clip(s, 0, slices - 1))
        below = int(np.floor(s))
        weight = s - below
        if weight < SNAP_SLICE:
            weight = 0.0
        elif weight > 1 - SNAP_SLICE:
            below, weight = below + 1, 0.0
        pair = [(below, 1.0 - weight)] + ([(below + 1, weight)] if weight > 0 else [])
        shifted = abs(drow) >= SNAP_PIXELS or abs(dcol) >= SNAP_PIXELS
        for index, w in pair:
            plane = source[index].astype(np.float32)
            if shifted:
                plane = _shift_plane(ndimage, plane, float(drow), float(dcol))
            out[k] += np.float32(w) * plane if w != 1.0 else plane
    return out, affine


def _shift_plane(ndimage, plane: np.ndarray, drow: float, dcol: float) -> np.ndarray:
    """``plane`` sampled bilinearly at ``(row + drow, col + dcol)``: the edge pixels' values out to half a
    pixel beyond their centres (their extent), 0 farther out."""
    out = ndimage.shift(plane, (-drow, -dcol), order=1, mode="nearest")
    rows = np.arange(plane.shape[0]) + drow
    cols = np.arange(plane.shape[1]) + dcol
    out[(rows < -0.5) | (rows > plane.shape[0] - 0.5), :] = 0
    out[:, (cols < -0.5) | (cols > plane.shape[1] - 0.5)] = 0
    return out
