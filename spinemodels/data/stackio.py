"""Reading stacks for the networks: intensity normalisation, pad-to-square resizing, a bounded cache.

Coordinates stay explicit: ``SquareResize`` maps a (row, col) of the stack's pixel grid to the resized
square grid and back (pixel centres, as ``torch.nn.functional.interpolate(align_corners=False)``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

LOW_PERCENTILE = 1.0
"""Intensities are clipped to this percentile of the stack (and the next) and scaled to 0-1."""
HIGH_PERCENTILE = 99.0


def normalise(volume: np.ndarray) -> np.ndarray:
    """(n, r, c) any dtype -> float32 in [0, 1], clipped to the stack's 1st-99th percentile."""
    volume = np.asarray(volume, dtype=np.float32)
    low, high = np.percentile(volume, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not np.isfinite(high - low) or high - low <= 0:
        return np.zeros_like(volume)
    return np.clip((volume - low) / (high - low), 0.0, 1.0)


@dataclass(frozen=True)
class SquareResize:
    """Zero-pad (rows, cols) at the bottom/right to a square, then resize it to ``size`` x ``size``."""

    rows: int
    cols: int
    size: int

    @property
    def scale(self) -> float:
        """Resized pixels per original pixel."""
        return self.size / max(self.rows, self.cols)

    def to_resized(self, rc: np.ndarray) -> np.ndarray:
        """(..., 2) (row, col) in the stack's grid -> the resized grid."""
        return (np.asarray(rc, dtype=np.float64) + 0.5) * self.scale - 0.5

    def to_original(self, rc: np.ndarray) -> np.ndarray:
        """(..., 2) (row, col) in the resized grid -> the stack's grid."""
        return (np.asarray(rc, dtype=np.float64) + 0.5) / self.scale - 0.5

    def apply(self, volume: np.ndarray) -> np.ndarray:
        """(n, rows, cols) -> (n, size, size) float32 (antialiased bilinear)."""
        n, rows, cols = volume.shape
        side = max(rows, cols)
        padded = np.zeros((n, side, side), dtype=np.float32)
        padded[:, :rows, :cols] = volume
        if side == self.size:
            return padded
        tensor = torch.from_numpy(padded)[None]
        out = F.interpolate(tensor, size=(self.size, self.size), mode="bilinear", align_corners=False,
                            antialias=self.size < side)
        return out[0].numpy()


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
    """Normalised, resized stacks kept in memory up to ``max_bytes`` (least recently used dropped first).

    One cache per dataset object, hence one per DataLoader worker.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple, stack: Any, size: int) -> np.ndarray:
        """(n, size, size) float32 for ``stack``, read, normalised and resized once."""
        key = (*key, size)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        volume = np.asarray(stack.read())
        resize = SquareResize(volume.shape[1], volume.shape[2], size)
        array = resize.apply(normalise(volume))
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
