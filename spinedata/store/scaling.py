"""Rescaled float stacks stored as their integers plus CF ``scale_factor`` / ``add_offset``.

A series with a non-integer RescaleSlope or RescaleIntercept is read as float32 values
``float32(stored * slope + intercept)`` (``spinedata.dicomio``). When every slice of a stack shares one
slope and intercept, the store keeps the integers and the two numbers instead (what NIfTI's ``scl_slope``
does): half the bytes, better compression, and ``decode_scaled`` gives back the float32 values bit for
bit. xarray applies the CF attributes itself (to float64). The packing is kept only when the round trip
is exact, so nothing is ever rounded.
"""

from __future__ import annotations

import numpy as np

SCALE_FACTOR = "scale_factor"
ADD_OFFSET = "add_offset"
INTEGER_TYPES = (np.uint8, np.uint16, np.int16, np.int32)


def decode_scaled(stored: np.ndarray, scale_factor: float, add_offset: float) -> np.ndarray:
    """float32 values of a packed array: ``float32(float64(stored) * scale_factor + add_offset)``."""
    return (stored.astype(np.float64) * scale_factor + add_offset).astype(np.float32)


def pack_rescaled(values: np.ndarray, slope: float, intercept: float) -> np.ndarray | None:
    """The smallest-integer array ``q`` with ``decode_scaled(q, slope, intercept) == values`` exactly, or
    None when there is none (values not of that form, or out of int32 range). Works slice by slice
    (first axis), so its temporaries stay the size of one slice."""
    if values.dtype != np.float32 or not np.isfinite(slope) or slope == 0 or not np.isfinite(intercept):
        return None
    if values.size == 0:
        return values.astype(np.uint16)
    slices = values.reshape(-1, *values.shape[-2:]) if values.ndim >= 2 else values.reshape(1, -1)
    packed = np.empty(slices.shape, dtype=np.int32)
    for k, plane in enumerate(slices):
        q = np.rint((plane.astype(np.float64) - intercept) / slope)
        if not np.all(np.isfinite(q)) or np.abs(q).max() > np.iinfo(np.int32).max:
            return None
        packed[k] = q
    lo, hi = int(packed.min()), int(packed.max())
    for dtype in INTEGER_TYPES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            out = packed.astype(dtype).reshape(values.shape)
            exact = all(
                np.array_equal(decode_scaled(out_plane, slope, intercept), plane)
                for out_plane, plane in zip(out.reshape(slices.shape), slices, strict=True)
            )
            return out if exact else None
    return None
