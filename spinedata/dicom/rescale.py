"""The rescale and dtype policy: ``stored * RescaleSlope + RescaleIntercept`` in which dtype.

Decided here once, for every reader: whether the slices of a stack share one rescale (``shared_rescale``)
and whether it is whole-number (``is_whole``: exact integers, no float); the dtype that holds the rescaled
values (``common_dtype``); whole-number rescale in integer arithmetic that wraps around exactly
(``_whole_rescaled``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

INTEGER_CANDIDATES = (np.uint8, np.uint16, np.int16, np.int32)


def shared_rescale(headers: Iterable) -> tuple[float, float] | None:
    """The ``(RescaleSlope, RescaleIntercept)`` every header (``SliceHeader``) shares, or None when they differ."""
    rescales = {(h.rescale_slope, h.rescale_intercept) for h in headers}
    if len(rescales) != 1:
        return None
    ((slope, intercept),) = rescales
    return slope, intercept


def is_whole(slope: float, intercept: float) -> bool:
    """Whether the rescale maps integers to integers (whole-number slope and intercept)."""
    return slope == int(slope) and intercept == int(intercept)


def rescaled(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Rescaled values: the stored array itself for the identity rescale; for whole-number slope and
    intercept, exact integers in the dtype ``common_dtype`` picks for them (``_whole_rescaled``; int64 when
    the stored values are not integers); else float64."""
    if slope == 1 and intercept == 0 and stored.dtype.kind in "iu":
        return stored
    if is_whole(slope, intercept):
        if stored.dtype.kind in "iu":
            return _whole_rescaled(stored, int(slope), int(intercept))
        return stored.astype(np.int64) * int(slope) + int(intercept)
    return stored.astype(np.float64) * slope + intercept


def common_dtype(arrays: list[np.ndarray], stored_dtypes: list[np.dtype]) -> np.dtype:
    """One dtype for a stack: the stored integer type when every rescaled value fits it, else the
    smallest of uint16/int16/int32 that holds them all, else float32 (non-integer rescale)."""
    if any(a.dtype.kind == "f" for a in arrays):
        return np.dtype(np.float32)
    lo = min(int(a.min()) for a in arrays)
    hi = max(int(a.max()) for a in arrays)
    return _dtype_for_range(lo, hi, np.result_type(*stored_dtypes))


def _dtype_for_range(lo: int, hi: int, stored: np.dtype) -> np.dtype:
    """``common_dtype``'s rule for integer values in ``[lo, hi]``: the stored type if it holds them, else the
    smallest of uint16/int16/int32 that does, else float32."""
    for candidate in (stored, *INTEGER_CANDIDATES[1:]):
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.float32)


def _whole_rescaled(stored: np.ndarray, slope: int, intercept: int) -> np.ndarray:
    """``stored * slope + intercept`` for a whole-number slope and intercept, exactly, in the dtype
    ``common_dtype`` picks for those values, without an int64 copy of the stack.

    The range of the result comes from the stored minimum and maximum (the rescale is monotonic); the
    arithmetic runs in the result's integer type, wrapping as integers do: wrapping is arithmetic modulo
    2**bits, so whatever wraps on the way, the result is exact when it fits that type, which the range
    guarantees."""
    lo, hi = int(stored.min()), int(stored.max())
    ends = (lo * slope + intercept, hi * slope + intercept)
    dtype = _dtype_for_range(min(ends), max(ends), stored.dtype)
    if dtype.kind == "f":  # beyond int32: float32, as common_dtype gives
        return (stored.astype(np.int64) * slope + intercept).astype(dtype)
    out = stored.astype(dtype)
    bits = 8 * dtype.itemsize
    if slope != 1:
        out *= np.array(slope % (1 << bits), dtype=np.uint64).astype(dtype)
    if intercept != 0:
        out += np.array(intercept % (1 << bits), dtype=np.uint64).astype(dtype)
    return out



def stacked(arrays: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """``arrays`` (one shape) as one ``(n, rows, cols)`` array of ``dtype``."""
    out = np.empty((len(arrays), *arrays[0].shape), dtype=dtype)
    for k, array in enumerate(arrays):
        out[k] = array
    return out
