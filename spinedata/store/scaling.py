"""Rescaled stacks stored as their integers plus CF ``scale_factor`` / ``add_offset``.

A series with a non-integer RescaleSlope or RescaleIntercept reads as float32 values
``float32(float64(stored) * slope + intercept)`` (``spinedata.dicom.read_stack``). When every slice of
a stack shares one slope and intercept, ingest keeps the stored integers and the two numbers instead
(``dicom.read_stack_stored``; what NIfTI's ``scl_slope`` does): half the bytes, better compression, and
``decode_scaled`` gives back the float32 values bit for bit. xarray applies the CF attributes itself (to
float64).
"""

from __future__ import annotations

import numpy as np

SCALE_FACTOR = "scale_factor"
ADD_OFFSET = "add_offset"


def decode_scaled(stored: np.ndarray, scale_factor: float, add_offset: float) -> np.ndarray:
    """float32 values of a packed array: ``float32(float64(stored) * scale_factor + add_offset)``."""
    return (stored.astype(np.float64) * scale_factor + add_offset).astype(np.float32)
