"""``StackGeometry``: one stack's regular ``(slice, row, col)`` grid in LPS millimetres, from real slice positions,
and where a world point lies in it (``Projection``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spinedata.errors import GeometryError
from spinedata.geometry.affine import affine_from_positions, apply_affine
from spinedata.geometry.orientation import normalise_orientation, slice_normal
from spinedata.geometry.spacing import FLAG_DEFAULT_SPACING, FLAG_SINGLE_SLICE, FLAGS, stack_flags

DEFAULT_SINGLE_SLICE_MM = 1.0
"""Slice step of a one-slice stack when neither SpacingBetweenSlices nor SliceThickness is known."""


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
            uniform, more = stack_flags(iop, pos, step)
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
