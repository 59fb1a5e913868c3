"""Pixels: decoded, MONOCHROME1 inverted, rescaled in the dtype ``rescale`` decides.

Three readers: ``_read_native`` (native pixel values read straight from the offset the header found),
``_read_native_stack`` (a whole stack of them into one array) and pydicom's decoders (``_decode_all``:
uncompressed, RLE, JPEG baseline/lossless, JPEG-LS, JPEG 2000 via pylibjpeg). MONOCHROME1 images are
inverted in the stored-value domain (``max_stored + min_stored - v``) before the rescale, so brighter is
always higher, as in MONOCHROME2. A Siemens mosaic's tiled image is decoded as it is stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spinedata.dicom.dataset import corrupt_file_errors, dataset_values, ensure_transfer_syntax, pydicom
from spinedata.dicom.limits import contain
from spinedata.dicom.rescale import common_dtype, is_whole, rescaled, shared_rescale, stacked
from spinedata.dicom.sliceheader import MONOCHROME1, SliceHeader
from spinedata.dicom.values import rescale
from spinedata.errors import DicomReadError


def _decode_all(path: str) -> tuple[np.ndarray, object]:
    """Stored values of every frame (``(rows, cols)``, or ``(frames, rows, cols)``) and the pydicom data set
    (native byte order, MONOCHROME1 inverted)."""
    dataset = None
    try:
        dataset = pydicom().dcmread(path, force=True)
        ensure_transfer_syntax(dataset)
        stored = dataset.pixel_array
    except FileNotFoundError as error:
        raise DicomReadError(f"file disappeared: {path}") from error
    except (NotImplementedError, RuntimeError) as error:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "?")
        raise DicomReadError(
            f"cannot decode pixel data of {path} (transfer syntax {syntax}): {error}"
        ) from error
    except (*corrupt_file_errors(), OSError) as error:
        raise DicomReadError(
            f"corrupt or truncated pixel data in {path}: {type(error).__name__}: {error}"
        ) from error
    stored = np.asarray(stored)
    if stored.dtype.byteorder == ">" or (stored.dtype.byteorder == "=" and not np.little_endian):
        stored = stored.astype(stored.dtype.newbyteorder("="))
    if str(dataset.get("PhotometricInterpretation", "")).strip().upper() == MONOCHROME1:
        stored = _invert(stored, int(dataset.get("BitsStored", stored.dtype.itemsize * 8)))
    return stored, dataset


def _decode(path: str) -> tuple[np.ndarray, object]:
    """``_decode_all`` of a file holding one 2-D grey-scale frame."""
    stored, dataset = _decode_all(path)
    if stored.ndim != 2:
        raise DicomReadError(
            f"expected one 2-D grey-scale frame in {path}, got an array of shape {stored.shape}"
        )
    return stored, dataset


def _read_native(header: SliceHeader) -> np.ndarray:
    """Native pixels straight from the offset found by ``read_header`` (no second parse of the header);
    the same values as pydicom: unused high bits cleared (unsigned) or sign-extended (signed),
    MONOCHROME1 inverted."""
    dtype = np.dtype(header.pixel_dtype)
    count = header.rows * header.cols
    try:
        stored = np.fromfile(header.path, dtype=dtype, count=count, offset=header.pixel_offset)
    except FileNotFoundError as error:
        raise DicomReadError(f"file disappeared: {header.path}") from error
    except (OSError, ValueError) as error:
        raise DicomReadError(f"cannot read pixel data of {header.path}: {error}") from error
    if stored.size != count:
        raise DicomReadError(f"truncated pixel data in {header.path}: {stored.size} of {count} values")
    stored = stored.astype(dtype.newbyteorder("="), copy=False).reshape(header.rows, header.cols)
    _clear_unused_bits(stored, header.bits_stored)
    if header.photometric == MONOCHROME1:
        stored = _invert(stored, header.bits_stored or dtype.itemsize * 8)
    return stored


def _clear_unused_bits(stored: np.ndarray, bits_stored: int) -> None:
    """In place, as pydicom does: the bits above BitsStored cleared (unsigned) or filled with the sign
    bit (signed); nothing when every bit is used."""
    bits = stored.dtype.itemsize * 8
    if 0 < bits_stored < bits:
        unused = bits - bits_stored
        if stored.dtype.kind == "i":
            np.left_shift(stored, unused, out=stored)
            np.right_shift(stored, unused, out=stored)
        else:
            np.bitwise_and(stored, (1 << bits_stored) - 1, out=stored)


def _invert(stored: np.ndarray, bits_stored: int) -> np.ndarray:
    """MONOCHROME1 -> MONOCHROME2 in the stored-value domain: ``max + min - v`` of the stored range."""
    if stored.dtype.kind == "i":
        return (-1 - stored.astype(np.int64)).astype(stored.dtype)
    return ((1 << bits_stored) - 1 - stored.astype(np.int64)).astype(stored.dtype)


Decoded = dict[str, np.ndarray]
"""Every frame of the encapsulated multi-frame files decoded so far while reading one stack, by path (each
file is decoded once, not once per frame)."""


def _decoded_frame(header: SliceHeader, decoded: Decoded) -> np.ndarray:
    if header.path not in decoded:
        decoded[header.path] = _decode_all(header.path)[0]
    frames = decoded[header.path]
    if frames.ndim != 3 or header.frame >= len(frames):
        raise DicomReadError(f"pixel data of {header.path} of shape {frames.shape} has no frame {header.frame + 1}")
    return frames[header.frame]


def _stored_of(header: SliceHeader, decoded: Decoded | None = None) -> np.ndarray:
    """Stored values ``(rows, cols)`` of one slice (native byte order, MONOCHROME1 inverted), not rescaled."""
    if header.pixel_offset >= 0 and header.pixel_dtype:
        stored = _read_native(header)
    elif header.frame >= 0:
        stored = _decoded_frame(header, {} if decoded is None else decoded)
    else:
        stored = _decode(header.path)[0]
    if stored.shape != (header.rows, header.cols):
        raise DicomReadError(
            f"pixel array of shape {stored.shape} does not match Rows x Columns {(header.rows, header.cols)}"
        )
    return stored


def _pixels_of(item, decoded: Decoded | None = None) -> tuple[np.ndarray, np.dtype, int, int]:
    """``(rescaled, stored dtype, rows, cols)`` of a path or SliceHeader."""
    if isinstance(item, SliceHeader):
        stored = _stored_of(item, decoded)
        slope, intercept, rows, cols = item.rescale_slope, item.rescale_intercept, item.rows, item.cols
    else:
        stored, dataset = _decode(os.fspath(item))
        slope, intercept = rescale(dataset_values(dataset))
        rows, cols = int(dataset.Rows), int(dataset.Columns)
    if stored.shape != (rows, cols):
        raise DicomReadError(
            f"pixel array of shape {stored.shape} does not match Rows x Columns {(rows, cols)}"
        )
    return rescaled(stored, slope, intercept), stored.dtype, rows, cols


@contain
def read_pixels(path_or_header: str | Path | SliceHeader) -> np.ndarray:
    """Decoded pixels ``(rows, cols)`` with RescaleSlope/Intercept applied (stored dtype when it holds the
    values exactly, else the dtype ``common_dtype`` picks)."""
    values, stored_dtype, _, _ = _pixels_of(path_or_header)
    return values.astype(common_dtype([values], [stored_dtype]), copy=False)


def _read_native_stack(headers: list[SliceHeader]) -> np.ndarray | None:
    """Stored values of a stack read straight into one array, when every slice holds native pixels of one
    machine-order dtype and one matrix in MONOCHROME2 (the common case); None otherwise. The same values
    as ``_read_native`` slice by slice (unused high bits cleared or sign-extended), without per-slice
    arrays."""
    first = headers[0]
    dtype = np.dtype(first.pixel_dtype or "V")
    if (
        dtype.kind not in "iu" or not dtype.isnative
        or any(h.pixel_offset < 0 or h.pixel_dtype != first.pixel_dtype or h.photometric == MONOCHROME1
               or (h.rows, h.cols) != (first.rows, first.cols) for h in headers)
    ):  # fmt: skip
        return None
    out = np.empty((len(headers), first.rows, first.cols), dtype=dtype)
    size = out[0].nbytes
    for k, header in enumerate(headers):
        try:
            with open(header.path, "rb") as handle:
                handle.seek(header.pixel_offset)
                got = handle.readinto(memoryview(out[k]).cast("B"))
        except FileNotFoundError as error:
            raise DicomReadError(f"file disappeared: {header.path}") from error
        except OSError as error:
            raise DicomReadError(f"cannot read pixel data of {header.path}: {error}") from error
        if got != size:
            raise DicomReadError(
                f"truncated pixel data in {header.path}: {got // dtype.itemsize} of {first.rows * first.cols} values"
            )
        _clear_unused_bits(out[k], header.bits_stored)
    return out


@contain
def read_stack(headers: list[SliceHeader]) -> np.ndarray:
    """Pixels of a stack ``(n, rows, cols)`` in the order given, in one common dtype for the stack."""
    if not headers:
        raise DicomReadError("read_stack needs at least one header")
    shared = shared_rescale(headers)
    if shared is not None and is_whole(*shared):
        native = _read_native_stack(headers)
        if native is not None:  # the values slice by slice would give, at once, in the stack's dtype
            return rescaled(native, *shared)
    values, stored = [], []
    decoded: Decoded = {}
    for header in headers:
        array, stored_dtype, _, _ = _pixels_of(header, decoded)
        values.append(array)
        stored.append(stored_dtype)
    _check_one_shape(values)
    return stacked(values, common_dtype(values, stored))


@contain
def read_stack_stored(headers: list[SliceHeader]) -> tuple[np.ndarray, float, float]:
    """Stored values of a stack with one rescale: ``(stored (n, rows, cols), slope, intercept)`` such that
    ``stored * slope + intercept`` are the values ``read_stack`` returns (like NIfTI's ``scl_slope``/
    ``scl_inter`` or CF ``scale_factor``/``add_offset``). ``stored`` keeps one integer dtype (the smallest
    of the stored types that holds every slice). When the slices do not share one RescaleSlope/Intercept,
    or the pixels are not integers, this is ``(read_stack(headers), 1.0, 0.0)``."""
    if not headers:
        raise DicomReadError("read_stack_stored needs at least one header")
    shared = shared_rescale(headers)
    if shared is None:
        return read_stack(headers), 1.0, 0.0
    slope, intercept = shared
    native = _read_native_stack(headers)
    if native is not None:
        return native, float(slope), float(intercept)
    decoded: Decoded = {}
    arrays = [_stored_of(h, decoded) for h in headers]
    _check_one_shape(arrays)
    if any(a.dtype.kind not in "iu" for a in arrays):
        return read_stack(headers), 1.0, 0.0
    return stacked(arrays, common_dtype(arrays, [a.dtype for a in arrays])), float(slope), float(intercept)


def _check_one_shape(arrays: list[np.ndarray]) -> None:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DicomReadError(f"slices of one stack must share Rows x Columns, got {sorted(shapes)}")
