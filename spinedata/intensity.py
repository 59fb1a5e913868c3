"""Intensity scaling of MR images by percentiles: a stack's ``low`` and ``high`` percentiles map to 0 and 1.

MR intensities have no absolute unit, so every image the models see is scaled by percentiles of its own
stack. Two ways, one per use:

- :func:`percentile_scaled`: a whole volume at once (slice refinement unclipped, the networks' stacks
  clipped to 0-1);
- :func:`stack_intensity_range` once per stack, then :func:`normalise` on each block read from it (crops,
  which read only a small block of a lazy stack).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spinedata.errors import OptionError

PERCENTILES: tuple[float, float] = (1.0, 99.0)
"""Intensities are scaled so that these percentiles of a stack map to 0 and 1."""

PERCENTILE_MAX_VOXELS = 4_000_000
"""Stacks larger than this are subsampled (a regular stride) to estimate their percentiles."""


def percentile_scaled(volume: np.ndarray, percentiles: tuple[float, float] = PERCENTILES, *,
                      clip: bool) -> np.ndarray:
    """``(n, r, c)`` any dtype -> the volume with its ``percentiles`` at 0 and 1, clipped to 0-1 when ``clip``.

    Percentiles are exact (every voxel). A constant or non-finite range gives zeros (float32). The scaling
    runs in the dtype NumPy gives ``float32 - percentile`` (float64 under NumPy 2).
    """
    volume = np.asarray(volume, dtype=np.float32)
    low, high = np.percentile(volume, list(percentiles))
    if not np.isfinite(high - low) or high - low <= 0:
        return np.zeros_like(volume)
    scaled = (volume - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0) if clip else scaled


def stack_intensity_range(volume: Any, percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """``(low, high)`` intensity percentiles of a whole stack ``(n, rows, cols)``; compute once per stack.

    Stacks over PERCENTILE_MAX_VOXELS voxels are estimated from a regular subsample of their pixels.
    A constant stack gives ``high = low + 1`` so that normalisation maps it to 0 instead of dividing by 0.
    """
    shape = tuple(int(v) for v in volume.shape)
    stride = max(1, int(np.ceil(np.sqrt(np.prod(shape) / PERCENTILE_MAX_VOXELS))))
    values = np.asarray(volume[:, ::stride, ::stride], dtype=np.float64)
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:
        high = low + 1.0
    return low, high


def normalise(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Scale ``values`` so that ``value_range`` maps to 0..1, clipped; float32, same shape."""
    low, high = value_range
    if not high > low:
        raise OptionError(f"intensity range must have high > low, got {value_range}")
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(scaled, 0.0, 1.0, out=scaled)
