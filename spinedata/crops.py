"""Crops of constant physical size around a patient-space point, in the plane of a stack (NumPy/SciPy).

A crop is ``(n_slices, size, size)`` float32: ``n_slices`` consecutive slices of the stack centred on the
slice nearest to the point (slices beyond the stack are zeros, never shifted back inside), each resampled
on a square of ``side_mm`` millimetres centred on the point. Output row ``i`` runs along the stack's row
direction (``c = IOP[3:6]``) and output column ``j`` along its column direction (``r = IOP[0:3]``), so a
crop looks like the stack's own images. Output pixel ``(i, j)`` is at
``((i - (size-1)/2) * side_mm/size, (j - (size-1)/2) * side_mm/size)`` mm from the point: the point sits at
the exact centre ``((size-1)/2, (size-1)/2)``. Non-square pixel spacing is honoured (the grid is in mm),
and downsampling is anti-aliased with a Gaussian of ``sigma = (zoom - 1) / 2`` source pixels per axis
(as scikit-image does) before linear interpolation (:func:`bilinear_sample`).

Only the block of slices, rows and columns the crop needs is read from ``volume``, so a lazy
``xarray.DataArray`` or zarr array of a whole stack can be passed directly.

Example:
    >>> import numpy as np
    >>> from spinedata.geometry import StackGeometry
    >>> geometry = StackGeometry.from_positions([0, 1, 0, 0, 0, -1], (0.5, 0.5),
    ...                                          [[float(k), 0, 0] for k in range(5)], range(1, 6), (64, 64))
    >>> volume = np.zeros((5, 64, 64), np.float32); volume[2, 30, 40] = 1.0
    >>> crop = crop_around(volume, geometry, geometry.voxel_to_world([2, 30, 40]), 10.0, 3, 21)
    >>> crop.shape, [int(i) for i in np.unravel_index(crop[1].argmax(), (21, 21))]
    ((3, 21, 21), [10, 10])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from spinedata.errors import OptionError
from spinedata.intensity import normalise

ANTIALIAS_TRUNCATE = 3.0
"""Gaussian prefilter truncated at this many sigmas; the read block gets the same margin."""


def crop_matrix(
    side_mm: float, size: int, pixel_spacing: tuple[float, float], *, angle_deg: float = 0.0, scale: float = 1.0
) -> np.ndarray:
    """``(2,2)`` matrix taking an output offset ``(i - (size-1)/2, j - (size-1)/2)`` (output pixels) to a
    source offset ``(d_row, d_col)`` (source pixels).

    The output covers ``side_mm * scale`` mm, rotated by ``angle_deg`` (counter-clockwise as displayed,
    in mm, so non-square pixels stay right); ``pixel_spacing`` is the stack's ``(drow, dcol)`` in mm.
    """
    out_mm = side_mm * scale / size
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    rotation_mm = np.array([[cos, sin], [-sin, cos]]) * out_mm
    drow, dcol = pixel_spacing
    return rotation_mm / np.array([[drow], [dcol]])


def crop_grid(
    side_mm: float, size: int, pixel_spacing: tuple[float, float], *, angle_deg: float = 0.0, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets in source pixels ``(d_rows, d_cols)``, each ``(size, size)``, of every output pixel from the
    crop centre (see :func:`crop_matrix`)."""
    matrix = crop_matrix(side_mm, size, pixel_spacing, angle_deg=angle_deg, scale=scale)
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    grid = np.stack(np.meshgrid(offsets, offsets, indexing="ij"))
    d_rows, d_cols = np.tensordot(matrix, grid, axes=1)
    return d_rows, d_cols


def antialias_sigma(side_mm: float, size: int, pixel_spacing: tuple[float, float], scale: float = 1.0):
    """Gaussian sigma ``(rows, cols)`` in source pixels for resampling to ``side_mm*scale/size`` mm pixels:
    ``max(0, (zoom - 1) / 2)`` with ``zoom`` the output pixel size over the source pixel size."""
    out_mm = side_mm * scale / size
    return tuple(max(0.0, (out_mm / float(d) - 1.0) / 2.0) for d in pixel_spacing)


def _check(side_mm: float, n_slices: int, size: int, jitter_mm: float, jitter_slices: int, scale: float, rng):
    if not side_mm > 0:
        raise OptionError(f"crop side must be > 0 mm, got {side_mm}")
    if n_slices < 1 or size < 1:
        raise OptionError(f"crop needs n_slices >= 1 and size >= 1, got n_slices={n_slices}, size={size}")
    if jitter_mm < 0 or jitter_slices < 0:
        raise OptionError(f"jitter must be >= 0, got jitter_mm={jitter_mm}, jitter_slices={jitter_slices}")
    if not scale > 0:
        raise OptionError(f"crop scale must be > 0, got {scale}")
    if (jitter_mm > 0 or jitter_slices > 0) and rng is None:
        raise OptionError("jitter needs a numpy.random.Generator: pass rng=np.random.default_rng(seed)")


def bilinear_sample(block: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Linear interpolation of every slice of ``block (n, h, w)`` at the points ``rows, cols`` (same shape
    ``(...)``, in pixels) -> ``(n, ...)`` float32.

    The block is taken as surrounded by zeros, so values fade to 0 within one pixel outside it (like
    ``scipy.ndimage.map_coordinates(..., order=1, mode="grid-constant")``). The weights are computed once
    and shared by all slices, which is several times faster than one ``map_coordinates`` call per slice.
    """
    n, height, width = block.shape
    padded = np.zeros((n, height + 2, width + 2), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = block
    r = np.clip(np.asarray(rows, dtype=np.float64) + 1.0, 0.0, height + 1.0)
    c = np.clip(np.asarray(cols, dtype=np.float64) + 1.0, 0.0, width + 1.0)
    r0 = np.minimum(np.floor(r).astype(np.intp), height)
    c0 = np.minimum(np.floor(c).astype(np.intp), width)
    fr = (r - r0).astype(np.float32).ravel()
    fc = (c - c0).astype(np.float32).ravel()
    stride = width + 2
    flat = padded.reshape(n, -1)
    top_left = (r0 * stride + c0).ravel()
    above = flat[:, top_left]
    above += fc * (flat[:, top_left + 1] - above)
    below = flat[:, top_left + stride]
    below += fc * (flat[:, top_left + stride + 1] - below)
    out = above
    out += fr * (below - above)
    return out.reshape(n, *np.shape(rows))


def crop_centre(geometry: Any, world_point) -> tuple[int, float, float]:
    """``(slice, row, col)`` on which a crop around ``world_point`` (LPS mm, ``(3,)``) is centred.

    Within the stack's slab (fractional slice index in ``[-0.5, n - 0.5]``) this is ``geometry.project``:
    the nearest slice by real positions and the point's row/col in that slice's grid. Beyond the slab the
    slice index continues with the mean step (e.g. -3 or n + 2), so the crop is zero-padded rather than
    silently moved onto the first or last slice.
    """
    point = np.asarray(world_point, dtype=np.float64).reshape(3)
    fractional = np.asarray(geometry.world_to_voxel(point), dtype=np.float64).reshape(3)
    if -0.5 <= fractional[0] <= geometry.shape[0] - 0.5:
        projection = geometry.project(point)
        return int(projection.slice), float(projection.row), float(projection.col)
    return int(np.floor(fractional[0] + 0.5)), float(fractional[1]), float(fractional[2])


def crop_around(
    volume: Any,
    geometry: Any,
    world_point,
    side_mm: float,
    n_slices: int,
    size: int,
    *,
    mirror: bool = False,
    intensity_range: tuple[float, float] | None = None,
    jitter_mm: float = 0.0,
    jitter_slices: int = 0,
    rng: np.random.Generator | None = None,
    angle_deg: float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """A ``(n_slices, size, size)`` float32 crop of ``side_mm`` mm around ``world_point`` (LPS mm, ``(3,)``).

    volume: ``(n, rows, cols)`` array or anything sliceable like it (the store's lazy ``stack.image``);
    geometry: its :class:`~spinedata.geometry.StackGeometry` (the point is placed by :func:`crop_centre`,
    which follows each slice's real position). Slices ``k - n_slices//2 ... k + (n_slices-1)//2`` around the
    nearest slice ``k``; those beyond the stack and pixels beyond its rows/cols are 0.
    intensity_range: ``(low, high)`` from ``spinedata.intensity.stack_intensity_range`` (once per stack) ->
    values scaled to 0..1; None keeps the stored values.
    mirror: flip the crop's columns (the right side made to look like the left).
    jitter_mm: the centre moves by a uniform offset in ``[-jitter_mm, jitter_mm]`` mm along rows and along
    columns; jitter_slices: the centre slice moves by an integer in ``[-jitter_slices, jitter_slices]``;
    both drawn from ``rng`` (required when jittering). angle_deg / scale: in-plane rotation (degrees) and
    field-of-view factor (1.2 = 20 % more mm in the same pixels), for augmentation.
    """
    _check(side_mm, n_slices, size, jitter_mm, jitter_slices, scale, rng)
    centre_slice, centre_row, centre_col = crop_centre(geometry, world_point)
    drow, dcol = (float(v) for v in geometry.pixel_spacing)
    if jitter_mm > 0:
        shift_down, shift_right = rng.uniform(-jitter_mm, jitter_mm, size=2)
        centre_row += shift_down / drow
        centre_col += shift_right / dcol
    if jitter_slices > 0:
        centre_slice += int(rng.integers(-jitter_slices, jitter_slices + 1))

    matrix = crop_matrix(side_mm, size, (drow, dcol), angle_deg=angle_deg, scale=scale)
    half = (size - 1) / 2.0
    corners = matrix @ np.array([[-half, -half, half, half], [-half, half, -half, half]])
    rows = centre_row + corners[0]
    cols = centre_col + corners[1]
    sigma = antialias_sigma(side_mm, size, (drow, dcol), scale)

    n_stack, n_rows, n_cols = (int(v) for v in geometry.shape)
    wanted = centre_slice - n_slices // 2 + np.arange(n_slices)
    valid = (wanted >= 0) & (wanted < n_stack)
    crop = np.zeros((n_slices, size, size), dtype=np.float32)
    margin_r = int(np.ceil(ANTIALIAS_TRUNCATE * sigma[0])) + 2
    margin_c = int(np.ceil(ANTIALIAS_TRUNCATE * sigma[1])) + 2
    r_lo = max(0, int(np.floor(rows.min())) - margin_r)
    r_hi = min(n_rows, int(np.ceil(rows.max())) + margin_r + 1)
    c_lo = max(0, int(np.floor(cols.min())) - margin_c)
    c_hi = min(n_cols, int(np.ceil(cols.max())) + margin_c + 1)
    if not valid.any() or r_lo >= r_hi or c_lo >= c_hi:
        return crop

    s_lo, s_hi = int(wanted[valid][0]), int(wanted[valid][-1]) + 1
    block = np.asarray(volume[s_lo:s_hi, r_lo:r_hi, c_lo:c_hi], dtype=np.float32)
    if intensity_range is not None:
        block = normalise(block, intensity_range)
    if sigma[0] > 0 or sigma[1] > 0:
        block = ndimage.gaussian_filter(block, sigma=(0.0, *sigma), mode="nearest", truncate=ANTIALIAS_TRUNCATE)
    d_rows, d_cols = crop_grid(side_mm, size, (drow, dcol), angle_deg=angle_deg, scale=scale)
    crop[valid] = bilinear_sample(block, centre_row - r_lo + d_rows, centre_col - c_lo + d_cols)
    if mirror:
        crop = np.ascontiguousarray(crop[:, :, ::-1])
    return crop
