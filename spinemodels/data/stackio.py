"""Reading stacks for the networks: intensity normalisation, resampling to a fixed-millimetre grid, a cache.

Coordinates stay explicit: ``PhysicalGrid`` maps a (row, col) of the stack's pixel grid to the square grid
of fixed mm per pixel the networks see, and back (pixel centres); datasets and ``locate`` use it alike.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spinedata.intensity import PERCENTILES, percentile_scaled

LOW_PERCENTILE, HIGH_PERCENTILE = PERCENTILES
"""Intensities are clipped to these percentiles of the stack and scaled to 0-1 (``spinedata.intensity``)."""


def normalise(volume: np.ndarray) -> np.ndarray:
    """(n, r, c) any dtype -> float32 in [0, 1], clipped to the stack's 1st-99th percentile."""
    return percentile_scaled(volume, (LOW_PERCENTILE, HIGH_PERCENTILE), clip=True)


@dataclass(frozen=True)
class PhysicalGrid:
    """A square grid of fixed millimetres per pixel (``fov_mm / size``), centred on the stack's image centre.

    Matrix size, field of view and pixel spacing (``pixel_spacing = (drow, dcol)`` mm, possibly non-square)
    of a stack do not change what lands on the grid: one grid pixel is always ``fov_mm / size`` mm, and the
    middle of the image is the middle of the grid. Coordinates are pixel centres (0 = the first pixel's
    centre) in both grids: ``grid = (rc - image_centre) * spacing / mm_per_pixel + grid_centre``.
    Parts of the grid outside the image are zeros. ``shift`` (grid pixels, (row, col)) moves the image
    centre off the grid's middle, for test-time averaging over sub-pixel placements.
    """

    rows: int
    cols: int
    pixel_spacing: tuple[float, float]
    size: int
    fov_mm: float
    shift: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        drow, dcol = (float(v) for v in self.pixel_spacing)
        if not (drow > 0 and dcol > 0 and self.fov_mm > 0 and self.size > 0 and self.rows > 0 and self.cols > 0):
            raise ValueError(f"PhysicalGrid needs positive sizes and spacings, got {self}")
        object.__setattr__(self, "pixel_spacing", (drow, dcol))
        shift = tuple(float(v) for v in self.shift)
        if len(shift) != 2 or not all(np.isfinite(shift)) or max(abs(v) for v in shift) > self.size / 4:
            raise ValueError(f"PhysicalGrid shift must be two finite grid-pixel offsets, got {self.shift}")
        object.__setattr__(self, "shift", shift)

    @classmethod
    def of_stack(cls, stack: Any, size: int, fov_mm: float, shift: tuple[float, float] = (0.0, 0.0)) -> PhysicalGrid:
        """The grid of a stack (its shape and ``geometry.pixel_spacing``)."""
        _, rows, cols = stack.shape
        return cls(int(rows), int(cols), tuple(stack.geometry.pixel_spacing), int(size), float(fov_mm), shift)

    @property
    def mm_per_pixel(self) -> float:
        return self.fov_mm / self.size

    def _scale(self) -> np.ndarray:
        """Grid pixels per stack pixel, (row, col)."""
        return np.asarray(self.pixel_spacing) / self.mm_per_pixel

    def _centres(self) -> tuple[np.ndarray, np.ndarray]:
        middle = (self.size - 1) / 2
        return np.array([(self.rows - 1) / 2, (self.cols - 1) / 2]), middle + np.asarray(self.shift)

    def to_grid(self, rc: np.ndarray) -> np.ndarray:
        """(..., 2) (row, col) in the stack's pixel grid -> the physical grid."""
        image_centre, grid_centre = self._centres()
        return (np.asarray(rc, dtype=np.float64) - image_centre) * self._scale() + grid_centre

    def to_stack(self, rc: np.ndarray) -> np.ndarray:
        """(..., 2) (row, col) in the physical grid -> the stack's pixel grid."""
        image_centre, grid_centre = self._centres()
        return (np.asarray(rc, dtype=np.float64) - grid_centre) / self._scale() + image_centre

    def _axis_weights(self, axis: int) -> np.ndarray:
        """(size, n_in) linear interpolation weights along one axis, widened when shrinking (antialiasing,
        a triangle filter as wide as one grid pixel), zero beyond the image."""
        n_in = self.rows if axis == 0 else self.cols
        image_centre, grid_centre = self._centres()
        scale = self._scale()[axis]
        source = (np.arange(self.size) - grid_centre[axis]) / scale + image_centre[axis]  # (size,)
        support = max(1.0 / scale, 1.0)  # stack pixels per grid pixel, at least one
        reach = int(np.ceil(support)) + 1
        base = np.floor(source).astype(int)
        taps = base[:, None] + np.arange(-reach, reach + 2)[None, :]  # (size, T)
        weights = np.clip(1.0 - np.abs(taps - source[:, None]) / support, 0.0, None)
        weights /= np.maximum(weights.sum(1, keepdims=True), 1e-12)
        matrix = np.zeros((self.size, n_in), dtype=np.float64)
        inside = (taps >= 0) & (taps < n_in)
        rows = np.broadcast_to(np.arange(self.size)[:, None], taps.shape)
        np.add.at(matrix, (rows[inside], taps[inside]), weights[inside])
        return matrix

    def coverage(self) -> np.ndarray:
        """(size, size) share of each grid pixel's interpolation weight that falls inside the image (1 inside,
        0 outside, in between at the edges)."""
        return np.outer(self._axis_weights(0).sum(1), self._axis_weights(1).sum(1)).astype(np.float32)

    def normalised(self, volume: np.ndarray) -> np.ndarray:
        """(n, rows, cols) any dtype -> (n, size, size) float32 on the grid, scaled to 0-1 by the 1st-99th
        percentile of the grid pixels inside the image (after resampling, so that the matrix, and with it
        the noise per pixel, hardly changes the scale)."""
        out = self.apply(np.asarray(volume, dtype=np.float32))
        inside = self.coverage() >= 0.999
        if not inside.any():
            return np.zeros_like(out)
        low, high = np.percentile(out[:, inside], [LOW_PERCENTILE, HIGH_PERCENTILE])
        if not np.isfinite(high - low) or high - low <= 0:
            return np.zeros_like(out)
        scaled = np.clip((out - np.float32(low)) / np.float32(high - low), 0.0, 1.0) * (self.coverage() > 0)
        return scaled.astype(np.float32, copy=False)

    def apply(self, volume: np.ndarray) -> np.ndarray:
        """(n, rows, cols) -> (n, size, size) float32 on the physical grid."""
        volume = np.asarray(volume, dtype=np.float32)
        if volume.shape[1:] != (self.rows, self.cols):
            raise ValueError(f"volume of shape {volume.shape} does not match the grid's {(self.rows, self.cols)}")
        along_rows = torch.from_numpy(self._axis_weights(0).astype(np.float32))
        along_cols = torch.from_numpy(self._axis_weights(1).astype(np.float32))
        out = along_rows @ torch.from_numpy(volume) @ along_cols.T
        return out.numpy()


def spinal_stack_candidates(study: Any, roles: tuple[str, ...]) -> list[tuple[str, int, Any]]:
    """``(series_id, k, stack)`` of every stack whose series has one of ``roles`` (in order of preference),
    largest first (most slices, then most pixels)."""
    found = []
    for preference, role in enumerate(roles):
        for series_id, series in study.series.items():
            if series.role != role:
                continue
            for k, stack in enumerate(series.stacks):
                n, rows, cols = stack.shape
                found.append((preference, -n, -rows * cols, str(series_id), k, stack))
        if found:
            break
    found.sort(key=lambda item: item[:5])
    return [(sid, k, stack) for _, _, _, sid, k, stack in found]


class StackCache:
    """Stacks on their ``PhysicalGrid``, normalised there (``PhysicalGrid.normalised``), or as they are (float32)
    when asked with no grid, kept in memory up to ``max_bytes`` (least recently used dropped first). One cache
    per dataset object, hence one per DataLoader worker.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple, stack: Any, grid: PhysicalGrid | None) -> np.ndarray:
        """(n, size, size) float32 for ``stack``, read, normalised and resampled to ``grid`` once; with no grid
        (n, rows, cols) float32, the stack's own pixels."""
        key = (*key, grid)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        pixels = np.asarray(stack.read())
        array = grid.normalised(pixels) if grid is not None else pixels.astype(np.float32, copy=False)
        if array.nbytes <= self.max_bytes:
            self._items[key] = array
            self._bytes += array.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
        return array


class LazyStoreDataset(torch.utils.data.Dataset):
    """Base of the datasets over a store: ``source`` is a store path (opened lazily, once per worker
    process, and never pickled) or an already opened ``spinedata.Dataset``."""

    def __init__(self, source: Any):
        self.source = source
        self._dataset = None if isinstance(source, str) else source

    @property
    def dataset(self):
        """The opened store (opened on first use in this process)."""
        if self._dataset is None:
            import spinedata

            self._dataset = spinedata.open_dataset(self.source)
        return self._dataset

    def __getstate__(self):
        state = dict(self.__dict__)
        if isinstance(self.source, str):
            state["_dataset"] = None
        return state
