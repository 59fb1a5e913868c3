"""The spacing of a stack's slices along its normal: the acquired step, gaps that are missing slices or split
a stack, and the flags of an irregular grid (``docs/geometry.md``)."""

from __future__ import annotations

import numpy as np

from spinedata.geometry.orientation import slice_normal

SPACING_RTOL = 1e-2
"""Slice gaps within this fraction of the mean step count as uniform; pixel spacings as equal."""
SPACING_ATOL_MM = 1e-3
"""Absolute floor (mm) of the gap tolerance: DICOM decimal strings carry limited digits."""
POSITION_REPEAT_MM = 1e-2
"""Two slices whose ``n . IPP`` differ by less than this are at the same position (a repeat)."""
GAP_JUMP_FACTOR = 1.5
"""A gap larger than this times the base step (``base_gap``) splits a stack (unless it is a few missing
slices)."""
MISSING_SLICE_RTOL = 5e-2
"""A gap within this fraction of a whole multiple (>= 2) of the base step is a run of missing slices."""
MAX_MISSING_RUN = 3
"""At most this many consecutive missing slices are bridged (flagged); a larger gap splits the stack."""
INPLANE_JUMP_PIXELS = 0.5
"""An in-plane offset jump between neighbouring slices larger than this (in pixels) splits a stack."""
SHEAR_ATOL = 1e-3
"""The sine of the angle between the slice step and ``n`` above which the stack is flagged ``shear``."""

FLAG_NONUNIFORM = "nonuniform"
FLAG_MISSING_SLICES = "missing_slices"
FLAG_SHEAR = "shear"
FLAG_SINGLE_SLICE = "single_slice"
FLAG_DEFAULT_SPACING = "default_spacing"
FLAGS: tuple[str, ...] = (
    FLAG_NONUNIFORM,
    FLAG_MISSING_SLICES,
    FLAG_SHEAR,
    FLAG_SINGLE_SLICE,
    FLAG_DEFAULT_SPACING,
)
"""Every flag a ``StackGeometry`` may carry (see ``docs/geometry.md``)."""


def base_gap(gaps: np.ndarray) -> float:
    """The acquired slice step (mm) of a stack from its gaps along ``n`` ``(k,)``: the smallest gap when
    every gap is a whole multiple (1..MAX_MISSING_RUN+1) of it (a stack with missing slices), else the
    median gap."""
    gaps = np.asarray(gaps, dtype=np.float64)
    smallest = float(gaps.min())
    if smallest > 0:
        ratio = gaps / smallest
        whole = np.rint(ratio)
        if np.all((whole <= MAX_MISSING_RUN + 1) & (np.abs(ratio - whole) <= MISSING_SLICE_RTOL * whole)):
            return smallest
    return float(np.median(gaps))


def classify_gaps(gaps: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """For gaps ``(k,)`` along ``n`` (mm) and the base step (``base_gap``) return ``(missing, jump)``
    boolean ``(k,)``: gaps that are a short run of missing slices (a whole multiple 2..MAX_MISSING_RUN+1
    of the step, within MISSING_SLICE_RTOL), and gaps that must split the stack (larger than
    GAP_JUMP_FACTOR x step and not missing slices)."""
    ratio = np.asarray(gaps, dtype=np.float64) / step
    whole = np.rint(ratio)
    missing = (
        (whole >= 2) & (whole <= MAX_MISSING_RUN + 1) & (np.abs(ratio - whole) <= MISSING_SLICE_RTOL * whole)
    )
    jump = (ratio > GAP_JUMP_FACTOR) & ~missing
    return missing, jump


def stack_flags(orientation: np.ndarray, positions: np.ndarray, step: np.ndarray) -> tuple[bool, list[str]]:
    """``(uniform, flags)`` of a stack of >= 2 slices from its real positions."""
    n = slice_normal(orientation)
    depth = positions @ n
    gaps = np.diff(depth)
    mean_gap = float(step @ n)
    tol = SPACING_RTOL * mean_gap + SPACING_ATOL_MM
    uniform = bool(np.all(np.abs(gaps - mean_gap) <= tol))
    flags: list[str] = []
    if not uniform:
        flags.append(FLAG_NONUNIFORM)
        missing, _ = classify_gaps(gaps, base_gap(gaps))
        if missing.any():
            flags.append(FLAG_MISSING_SLICES)
    norm = float(np.linalg.norm(step))
    if np.linalg.norm(step - (step @ n) * n) > SHEAR_ATOL * norm:
        flags.append(FLAG_SHEAR)
    return uniform, flags
