"""Stack geometry: voxel <-> patient (LPS mm) mapping from real DICOM slice positions.

Conventions (see ``docs/geometry.md`` and ``docs/design.md``):

* arrays are indexed ``(slice, row, col)``;
* ``IOP[0:3]`` = ``r`` is the direction of increasing column, ``IOP[3:6]`` = ``c`` of increasing row,
  ``PixelSpacing = (drow, dcol)``, ``n = r x c``; slices are sorted by ascending ``n . IPP``;
* the affine ``A`` maps ``(slice, row, col, 1)`` to LPS millimetres (+x left, +y posterior, +z head)::

      A[:3, 0] = (IPP_last - IPP_first) / (N - 1)     # one slice: n * spacing
      A[:3, 1] = drow * c
      A[:3, 2] = dcol * r
      A[:3, 3] = IPP_first

For evenly spaced stacks ``voxel_to_world`` is exactly the affine. For stacks flagged ``nonuniform``
the affine is the first-to-last mean step, while ``voxel_to_world``, ``world_to_voxel`` and ``project``
follow every slice's own position (piecewise linear between slices), so a labelled point never moves.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spinedata.errors import GeometryError

ORIENTATION_ATOL = 1e-4
"""Two IOPs (normalised) belong to one stack when every component agrees within this."""
ORTHOGONALITY_ATOL = 1e-3
"""``|r . c|`` above this (after normalising) means the IOP is not orthonormal."""
UNIT_NORM_RTOL = 1e-2
"""IOP vectors whose norm is further than this from 1 are rejected rather than silently normalised."""
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
DEFAULT_SINGLE_SLICE_MM = 1.0
"""Slice step of a one-slice stack when neither SpacingBetweenSlices nor SliceThickness is known."""
MAX_ABS_COORDINATE_MM = 1e5
"""Plausible patient coordinates: every ImagePositionPatient component within +-100 m (``geometry_problem``)."""
MIN_SPACING_MM = 1e-3
"""Plausible pixel and slice spacings lie in [MIN_SPACING_MM, MAX_SPACING_MM] (1 micrometre to 1 m)."""
MAX_SPACING_MM = 1e3

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

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


def _stack_flags(orientation: np.ndarray, positions: np.ndarray, step: np.ndarray) -> tuple[bool, list[str]]:
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


@dataclass(frozen=True)
class Projection:
    """A world point seen from a stack."""

    slice: int
    """Nearest slice index (from the real per-slice positions)."""
    row: float
    """Row in that slice's pixel grid (the ``y`` of Kaggle labels)."""
    col: float
    """Column in that slice's pixel grid (the ``x`` of Kaggle labels)."""
    distance_mm: float
    """Signed distance (mm, along ``n``) from that slice's plane to the point."""
    inside: bool
    """Within the stack's rows/cols and within half a slice step of its slab."""


@dataclass(frozen=True, eq=False)
class StackGeometry:
    """Geometry of one stack: a regular ``(slice,row,col)`` grid in LPS millimetres."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    positions: np.ndarray
    instance_numbers: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    uniform: bool
    flags: tuple[str, ...] = ()
    _depth: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(v) for v in self.shape)
        affine = np.asarray(self.affine, dtype=np.float64)
        positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        instance_numbers = np.asarray(self.instance_numbers, dtype=np.int64).reshape(-1)
        orientation = normalise_orientation(self.orientation)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"stack shape must be 3 positive ints (slice,row,col), got {self.shape}")
        if affine.shape != (4, 4):
            raise GeometryError(f"affine must be 4x4, got shape {affine.shape}")
        if len(positions) != shape[0] or len(instance_numbers) != shape[0]:
            raise GeometryError(
                f"stack of {shape[0]} slices needs {shape[0]} positions and instance numbers, "
                f"got {len(positions)} and {len(instance_numbers)}"
            )
        unknown = set(self.flags) - set(FLAGS)
        if unknown:
            raise GeometryError(f"unknown stack flags {sorted(unknown)}; known: {FLAGS}")
        depth = positions @ slice_normal(orientation)
        if shape[0] > 1 and not np.all(np.diff(depth) > 0):
            raise GeometryError(
                "slice positions must be strictly increasing along n = r x c (split repeated volumes first)"
            )
        for name, value in (
            ("shape", shape),
            ("affine", affine),
            ("positions", positions),
            ("instance_numbers", instance_numbers),
            ("orientation", orientation),
            ("pixel_spacing", (float(self.pixel_spacing[0]), float(self.pixel_spacing[1]))),
            ("slice_spacing", float(self.slice_spacing)),
            ("uniform", bool(self.uniform)),
            ("flags", tuple(self.flags)),
            ("_depth", depth),
        ):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_positions(
        cls,
        orientation,
        pixel_spacing,
        positions,
        instance_numbers,
        matrix: tuple[int, int],
        *,
        single_slice_spacing: float | None = None,
    ) -> StackGeometry:
        """Build a stack from real slice positions ``(n,3)`` (any order: sorted here by ``n . IPP``).

        ``matrix`` is ``(rows, cols)``. A one-slice stack takes ``single_slice_spacing`` (mm) as its step,
        or DEFAULT_SINGLE_SLICE_MM (flagged ``default_spacing``) when it is None. Flags are computed from
        the positions; instance numbers follow their slices.
        """
        iop = normalise_orientation(orientation)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        inst = np.asarray(instance_numbers, dtype=np.int64).reshape(-1)
        order = np.argsort(pos @ slice_normal(iop), kind="stable")
        pos, inst = pos[order], inst[order]
        flags: list[str] = []
        if len(pos) == 1:
            flags.append(FLAG_SINGLE_SLICE)
            if single_slice_spacing is None:
                single_slice_spacing = DEFAULT_SINGLE_SLICE_MM
                flags.append(FLAG_DEFAULT_SPACING)
        affine = affine_from_positions(iop, pixel_spacing, pos, single_slice_spacing)
        step = affine[:3, 0]
        uniform = True
        if len(pos) > 1:
            uniform, more = _stack_flags(iop, pos, step)
            flags.extend(more)
        return cls(
            shape=(len(pos), int(matrix[0]), int(matrix[1])),
            affine=affine,
            positions=pos,
            instance_numbers=inst,
            orientation=iop,
            pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
            slice_spacing=float(np.linalg.norm(step)),
            uniform=uniform,
            flags=tuple(flags),
        )

    def to_attrs(self) -> dict[str, Any]:
        """JSON-able description (positions and instance numbers are stored as arrays beside it)."""
        return {
            "affine": self.affine.tolist(),
            "pixel_spacing": list(self.pixel_spacing),
            "slice_spacing": self.slice_spacing,
            "orientation": self.orientation.tolist(),
            "uniform": self.uniform,
            "flags": list(self.flags),
            "shape": list(self.shape),
        }

    @classmethod
    def from_attrs(cls, attrs: dict, positions, instance_numbers) -> StackGeometry:
        """Inverse of ``to_attrs`` given the stored ``positions (n,3)`` and ``instance_numbers (n,)``."""
        missing = {"affine", "pixel_spacing", "slice_spacing", "orientation", "uniform", "shape"} - set(attrs)
        if missing:
            raise GeometryError(
                f"stack attributes lack {sorted(missing)}; was the store written by spinedata?"
            )
        return cls(
            shape=tuple(attrs["shape"]),
            affine=np.asarray(attrs["affine"], dtype=np.float64),
            positions=positions,
            instance_numbers=instance_numbers,
            orientation=np.asarray(attrs["orientation"], dtype=np.float64),
            pixel_spacing=tuple(attrs["pixel_spacing"]),
            slice_spacing=float(attrs["slice_spacing"]),
            uniform=bool(attrs["uniform"]),
            flags=tuple(attrs.get("flags", ())),
        )

    # ----------------------------------------------------------------- derived directions
    @property
    def normal(self) -> np.ndarray:
        """``n = r x c`` ``(3,)``, unit length."""
        return slice_normal(self.orientation)

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    def _in_plane(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column steps in mm: ``(drow * c, dcol * r)``."""
        return self.affine[:3, 1], self.affine[:3, 2]

    # ----------------------------------------------------------------- mappings
    def _slice_origin(self, s: np.ndarray) -> np.ndarray:
        """Position ``(...,3)`` of (fractional) slice index ``s (...)``: real positions, linear between
        them, and the mean step beyond both ends."""
        s = np.asarray(s, dtype=np.float64)
        step = self.affine[:3, 0]
        last = self.n_slices - 1
        if last == 0:
            return self.positions[0] + s[..., None] * step
        inside = np.stack(
            [np.interp(s, np.arange(last + 1), self.positions[:, k]) for k in range(3)], axis=-1
        )
        below = self.positions[0] + np.minimum(s, 0)[..., None] * step
        above = self.positions[-1] + np.maximum(s - last, 0)[..., None] * step
        return np.where((s < 0)[..., None], below, np.where((s > last)[..., None], above, inside))

    def _slice_index(self, depth: np.ndarray) -> np.ndarray:
        """Fractional slice index ``(...)`` of a depth along ``n`` (mm): inverse of ``_slice_origin``."""
        depth = np.asarray(depth, dtype=np.float64)
        step_n = float(self.affine[:3, 0] @ self.normal)
        last = self.n_slices - 1
        below = (depth - self._depth[0]) / step_n
        if last == 0:
            return below
        above = last + (depth - self._depth[-1]) / step_n
        inside = np.interp(depth, self._depth, np.arange(last + 1, dtype=np.float64))
        return np.where(depth < self._depth[0], below, np.where(depth > self._depth[-1], above, inside))

    def voxel_to_world(self, ijk) -> np.ndarray:
        """``(...,3)`` voxel ``(slice,row,col)`` -> ``(...,3)`` LPS mm (the affine for uniform stacks)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        if self.uniform:
            return apply_affine(self.affine, ijk)
        row_step, col_step = self._in_plane()
        return self._slice_origin(ijk[..., 0]) + ijk[..., 1:2] * row_step + ijk[..., 2:3] * col_step

    def world_to_voxel(self, xyz) -> np.ndarray:
        """``(...,3)`` LPS mm -> ``(...,3)`` float voxel ``(slice,row,col)``; exact inverse of
        ``voxel_to_world``."""
        xyz = np.asarray(xyz, dtype=np.float64)
        if self.uniform:
            return apply_affine(np.linalg.inv(self.affine), xyz)
        s = self._slice_index(xyz @ self.normal)
        offset = xyz - self._slice_origin(s)
        row_step, col_step = self._in_plane()
        rows = offset @ row_step / (row_step @ row_step)
        cols = offset @ col_step / (col_step @ col_step)
        return np.stack([s, rows, cols], axis=-1)

    def project(self, xyz) -> Projection:
        """Nearest slice (by real positions) to one LPS point ``(3,)``, its row/col there, signed distance."""
        point = np.asarray(xyz, dtype=np.float64).reshape(3)
        depth = float(point @ self.normal)
        k = int(np.argmin(np.abs(self._depth - depth)))
        offset = point - self.positions[k]
        row_step, col_step = self._in_plane()
        row = float(offset @ row_step / (row_step @ row_step))
        col = float(offset @ col_step / (col_step @ col_step))
        distance = depth - float(self._depth[k])
        half = 0.5 * float(self.affine[:3, 0] @ self.normal)
        _, rows, cols = self.shape
        inside = (
            -0.5 <= row <= rows - 0.5
            and -0.5 <= col <= cols - 0.5
            and self._depth[0] - half <= depth <= self._depth[-1] + half
        )
        return Projection(slice=k, row=row, col=col, distance_mm=distance, inside=bool(inside))
