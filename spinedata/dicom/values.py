"""Header values as ``spinedata`` uses them: one accessor (``Values``) over the scan's raw bytes, a pydicom
data set or a frame's functional groups, and the checked conversions to numbers, text and vectors."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from spinedata.errors import DicomReadError

Values = Callable[[str], "list | tuple | None"]
"""``values(keyword)``: the values of one header element (str for DS/IS/UI/CS, int for US), None when
absent or empty."""

MAX_ABS_RESCALE = 1e10
"""|RescaleSlope| and |RescaleIntercept| above this are reported (the rescaled values would not be exact
in any stored dtype, and the arithmetic could overflow)."""


def as_int(value) -> int:
    """IS values: '12', ' 12 ', and the common but invalid '12.0'."""
    try:
        return int(value)
    except ValueError:
        number = float(value)
        if not number.is_integer():
            raise
        return int(number)


def number(values: Values, keyword: str, cast, default=None):
    """The first value of an element as ``cast`` (int or float), or ``default`` when absent/empty;
    unparsable values raise DicomReadError."""
    found = values(keyword)
    if not found or found[0] == "":
        return default
    try:
        return as_int(found[0]) if cast is int else cast(found[0])
    except (TypeError, ValueError) as error:
        raise DicomReadError(f"invalid {keyword} {found[0]!r}") from error


def text(values: Values, keyword: str) -> str:
    """A UID or code string, '' when absent."""
    found = values(keyword)
    return "\\".join(str(v) for v in found) if found else ""


def rescale(values: Values) -> tuple[float, float]:
    """``(RescaleSlope, RescaleIntercept)``, ``(1, 0)`` when absent; a zero or non-finite slope is an error."""
    slope = number(values, "RescaleSlope", float, 1.0)
    intercept = number(values, "RescaleIntercept", float, 0.0)
    if slope == 0 or not math.isfinite(slope) or not math.isfinite(intercept):
        raise DicomReadError(f"invalid rescale: RescaleSlope {slope}, RescaleIntercept {intercept}")
    if abs(slope) > MAX_ABS_RESCALE or abs(intercept) > MAX_ABS_RESCALE:
        raise DicomReadError(
            f"invalid rescale: RescaleSlope {slope:g}, RescaleIntercept {intercept:g} (implausible: "
            f"beyond +-{MAX_ABS_RESCALE:g})"
        )
    return slope, intercept


def vector(values: Values, keyword: str, length: int) -> tuple[float, ...]:
    found = values(keyword)
    if not found:
        raise DicomReadError(f"no {keyword}: the file is not an image with geometry")
    return finite_floats(tuple(found), keyword, length)


@functools.lru_cache(maxsize=4096)
def finite_floats(found: tuple, keyword: str, length: int) -> tuple[float, ...]:
    """``length`` finite numbers from an element's values (remembered, like ``elements.scanned_values``: a
    series repeats its orientation and spacing in every file)."""
    try:
        numbers = tuple(float(v) for v in found)
    except (TypeError, ValueError) as error:
        raise DicomReadError(f"invalid {keyword} {list(found)!r}") from error
    if len(numbers) != length or not all(math.isfinite(v) for v in numbers):
        raise DicomReadError(f"{keyword} must be {length} finite numbers, got {list(numbers)}")
    return numbers
