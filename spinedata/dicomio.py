"""Reading DICOM files: headers only (fast, for grouping into stacks) and pixels (decoded, rescaled).

``read_header`` parses a file up to its pixel data (``stop_before_pixels``) and checks that it is a
single-frame image with geometry; anything else raises ``DicomReadError`` with a precise reason, which
``spine ingest`` turns into a report line. ``read_pixels`` / ``read_stack`` decode the pixel data with
pydicom's plugins (uncompressed, RLE, JPEG baseline/lossless, JPEG-LS, JPEG 2000 via pylibjpeg) and apply
RescaleSlope/RescaleIntercept.

Decisions (see ``docs/geometry.md``):

* MONOCHROME1 images are inverted in the stored-value domain (``max_stored + min_stored - v``) before the
  rescale, so brighter is always higher, as in MONOCHROME2.
* Multi-frame files (NumberOfFrames > 1, e.g. enhanced MR) are rejected: their per-frame geometry lives in
  functional groups that this reader does not interpret. Siemens mosaics (ImageType MOSAIC) are rejected
  too (``read_pixels`` still decodes the tiled image as it is stored).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from spinedata.errors import DicomReadError, GeometryError
from spinedata.geometry import normalise_orientation

PIXEL_DATA_TAG = (0x7FE0, 0x0010)
LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UR", b"UT", b"UN"}
UNDEFINED_LENGTH = 0xFFFFFFFF
RAW_DATASET_GROUPS = {0x0002, 0x0008}
"""A file without the 128-byte preamble is read with ``force=True`` only if it starts with one of these."""

HEADER_KEYWORDS = [
    "SpecificCharacterSet", "ImageType", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "SeriesDescription", "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
    "BitsStored", "PixelRepresentation", "SliceThickness", "SpacingBetweenSlices", "EchoNumbers",
    "AcquisitionNumber", "TemporalPositionIdentifier", "RescaleSlope", "RescaleIntercept",
]  # fmt: skip
"""The only elements ``read_header`` parses (``specific_tags``: about 20 % faster than a full header)."""

HEADER_TAGS = {keyword: Tag(keyword) for keyword in HEADER_KEYWORDS}

MONOCHROME1 = "MONOCHROME1"
SUPPORTED_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2"}


@dataclass(frozen=True)
class SliceHeader:
    """Everything ``spinedata`` needs from one file, read without its pixel data."""

    path: str
    study_uid: str
    series_uid: str
    sop_uid: str
    series_description: str
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    cols: int
    slice_thickness: float | None
    spacing_between_slices: float | None
    echo_number: int | None
    acquisition_number: int | None
    temporal_position: int | None
    rescale_slope: float
    rescale_intercept: float
    transfer_syntax: str
    photometric: str = "MONOCHROME2"
    """PhotometricInterpretation (only MONOCHROME1/2 are accepted)."""
    bits_stored: int = 0
    """BitsStored (0 = unknown)."""
    pixel_offset: int = -1
    """Byte offset of native (uncompressed) pixel values in the file, -1 when encapsulated or unknown."""
    pixel_dtype: str = ""
    """NumPy dtype of the native pixel values (e.g. ``'<u2'``), ``''`` when they must be decoded."""


@dataclass(frozen=True)
class Skipped:
    """One line of an ingest report: a file (or group of files) left out, and why."""

    path: str
    reason: str
    study_id: str = ""
    series_id: str = ""


# ----------------------------------------------------------------------------- header
def _open_dataset(path: str, fp) -> pydicom.Dataset:
    """Parse up to the pixel data; ``force=True`` only for preamble-less files that start like a dataset."""
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=HEADER_KEYWORDS)
    except InvalidDicomError:
        fp.seek(0)
        start = fp.read(4)
        if len(start) < 4 or struct.unpack("<H", start[:2])[0] not in RAW_DATASET_GROUPS:
            raise DicomReadError("not a DICOM file (no 'DICM' marker and no dataset at the start)") from None
        fp.seek(0)
        try:
            return pydicom.dcmread(fp, stop_before_pixels=True, force=True, specific_tags=HEADER_KEYWORDS)
        except CORRUPT_FILE_ERRORS as error:
            raise DicomReadError(f"not a DICOM file ({type(error).__name__}: {error})") from error
    except (EOFError, struct.error, OSError, ValueError, KeyError, TypeError) as error:
        raise DicomReadError(f"truncated or corrupt header ({type(error).__name__}: {error})") from error


def _check_pixel_element(fp, dataset: pydicom.Dataset, size: int) -> tuple[int, int]:
    """After ``stop_before_pixels`` the file points at the pixel data element: check it is there and whole.
    Returns ``(offset of the value, its length)`` (length UNDEFINED_LENGTH when encapsulated)."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        raise DicomReadError(f"no pixel data (the file ends after {start} bytes of header; truncated?)")
    implicit, little = dataset.original_encoding
    endian = "<" if little in (True, None) else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group, element) != PIXEL_DATA_TAG:
        raise DicomReadError(f"no pixel data (found tag ({group:04X},{element:04X}) instead of PixelData)")
    if implicit:
        length, header_len = struct.unpack(endian + "I", head[4:8])[0], 8
    elif head[4:6] in LONG_VRS:
        if len(head) < 12:
            raise DicomReadError("truncated pixel data element")
        length, header_len = struct.unpack(endian + "I", head[8:12])[0], 12
    else:
        length, header_len = struct.unpack(endian + "H", head[6:8])[0], 8
    available = size - start - header_len
    if length != UNDEFINED_LENGTH and length > available:
        raise DicomReadError(f"truncated pixel data (expected {length} bytes, the file holds {available})")
    return start + header_len, length


NATIVE_SYNTAXES = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, ""}
"""Transfer syntaxes whose pixel values lie in the file as they are ('' = bare dataset)."""


def _native_dtype(dataset: pydicom.Dataset, transfer_syntax: str, length: int, n_pixels: int) -> str:
    """The dtype of native single-sample pixels that fill the element, or '' (decode with pydicom)."""
    if transfer_syntax not in NATIVE_SYNTAXES or length == UNDEFINED_LENGTH:
        return ""
    bits = _number(dataset, "BitsAllocated", int, 0)
    samples = _number(dataset, "SamplesPerPixel", int, 1)
    if bits not in (8, 16, 32) or samples != 1:
        return ""
    if length < n_pixels * bits // 8:
        raise DicomReadError(
            f"pixel data holds {length} bytes, fewer than Rows x Columns x {bits // 8} = {n_pixels * bits // 8}"
        )
    _, little = dataset.original_encoding
    signed = _number(dataset, "PixelRepresentation", int, 0) == 1
    return f"{'<' if little in (True, None) else '>'}{'i' if signed else 'u'}{bits // 8}"


TEXT_VRS = {"DS", "IS", "UI", "CS"}
"""Value representations read straight from their bytes (pydicom's conversion is a third of the header
time); anything else goes through pydicom."""


def _values(dataset: pydicom.Dataset, keyword: str) -> list | None:
    """The values of one element (str for DS/IS/UI/CS, int for US, else pydicom's), None when absent/empty."""
    element = dataset.get_item(HEADER_TAGS.get(keyword) or Tag(keyword))
    if element is None or element.value is None:
        return None
    if isinstance(element, RawDataElement):
        vr = element.VR or dictionary_VR(element.tag)
        raw = element.value
        if vr in TEXT_VRS:
            parts = [part.strip(" \x00") for part in raw.decode("latin-1").split("\\")]
            return None if all(part == "" for part in parts) else parts
        if vr == "US" and len(raw) % 2 == 0:
            endian = "<" if element.is_little_endian else ">"
            return list(struct.unpack(f"{endian}{len(raw) // 2}H", raw)) or None
    value = dataset[keyword].value
    if value is None or value == "":
        return None
    return list(value) if isinstance(value, pydicom.multival.MultiValue | list | tuple) else [value]


def _as_int(value) -> int:
    """IS values: '12', ' 12 ', and the common but invalid '12.0'."""
    try:
        return int(value)
    except ValueError:
        number = float(value)
        if not number.is_integer():
            raise
        return int(number)


def _number(dataset, keyword: str, cast, default=None):
    """The first value of an element as ``cast`` (int or float), or ``default`` when absent/empty;
    unparsable values raise DicomReadError."""
    values = _values(dataset, keyword)
    if not values or values[0] == "":
        return default
    try:
        return _as_int(values[0]) if cast is int else cast(values[0])
    except (TypeError, ValueError) as error:
        raise DicomReadError(f"invalid {keyword} {values[0]!r}") from error


def _text(dataset, keyword: str) -> str:
    """A UID or code string, '' when absent."""
    values = _values(dataset, keyword)
    return "\\".join(str(v) for v in values) if values else ""


def _rescale(dataset) -> tuple[float, float]:
    """``(RescaleSlope, RescaleIntercept)``, ``(1, 0)`` when absent; a zero or non-finite slope is an error."""
    slope = _number(dataset, "RescaleSlope", float, 1.0)
    intercept = _number(dataset, "RescaleIntercept", float, 0.0)
    if slope == 0 or not np.isfinite(slope) or not np.isfinite(intercept):
        raise DicomReadError(f"invalid rescale: RescaleSlope {slope}, RescaleIntercept {intercept}")
    return slope, intercept


def _vector(dataset, keyword: str, length: int) -> tuple[float, ...]:
    values = _values(dataset, keyword)
    if not values:
        raise DicomReadError(f"no {keyword}: the file is not an image with geometry")
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError) as error:
        raise DicomReadError(f"invalid {keyword} {values!r}") from error
    if len(numbers) != length or not np.all(np.isfinite(numbers)):
        raise DicomReadError(f"{keyword} must be {length} finite numbers, got {list(numbers)}")
    return numbers


CORRUPT_FILE_ERRORS = (
    InvalidDicomError, BytesLengthException, NotImplementedError, ValueError, TypeError, KeyError, IndexError, AttributeError,
    EOFError, OverflowError, struct.error,
)  # fmt: skip
"""What pydicom raises on damaged files (found by fuzzing real files with flipped and cut bytes)."""


def read_header(path) -> SliceHeader:
    """Read one file's header (no pixels). Raises ``DicomReadError`` with the reason when the file is not
    a readable single-frame image with ImagePositionPatient, ImageOrientationPatient and PixelSpacing."""
    path = os.fspath(path)
    try:
        return _read_header(path)
    except CORRUPT_FILE_ERRORS as error:
        raise DicomReadError(f"corrupt header ({type(error).__name__}: {error})") from error


def _read_header(path: str) -> SliceHeader:
    try:
        size = os.path.getsize(path)
        fp = open(path, "rb")  # noqa: SIM115 - closed below, also on errors
    except OSError as error:
        raise DicomReadError(f"cannot open file ({error.strerror})") from error
    with fp:
        dataset = _open_dataset(path, fp)
        if fp.tell() >= size:
            raise DicomReadError(
                f"no pixel data (the file ends after {size} bytes of header; truncated, or not an image)"
            )
        rows, cols = _number(dataset, "Rows", int), _number(dataset, "Columns", int)
        if not rows or not cols:
            raise DicomReadError("not an image (no Rows/Columns)")
        frames = _number(dataset, "NumberOfFrames", int, 1)
        if frames > 1:
            raise DicomReadError(
                f"multi-frame file ({frames} frames) is not supported; export it as single-frame images"
            )
        image_type = [str(v).upper() for v in (_values(dataset, "ImageType") or [])]
        if "MOSAIC" in image_type:
            raise DicomReadError(
                "Siemens mosaic (several slices tiled in one image) is not supported; convert it with dcm2niix"
            )
        photometric = (_text(dataset, "PhotometricInterpretation") or "MONOCHROME2").upper()
        if photometric not in SUPPORTED_PHOTOMETRIC:
            raise DicomReadError(f"PhotometricInterpretation {photometric} is not a grey-scale image")
        position = _vector(dataset, "ImagePositionPatient", 3)
        orientation = _vector(dataset, "ImageOrientationPatient", 6)
        try:
            orientation = tuple(float(v) for v in normalise_orientation(orientation))
        except GeometryError as error:
            raise DicomReadError(str(error)) from error
        spacing = _vector(dataset, "PixelSpacing", 2)
        if min(spacing) <= 0:
            raise DicomReadError(f"PixelSpacing must be positive, got {list(spacing)}")
        slope, intercept = _rescale(dataset)
        meta = getattr(dataset, "file_meta", None)
        transfer_syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        pixel_offset, pixel_dtype = -1, ""
        if transfer_syntax != DeflatedExplicitVRLittleEndian:  # a deflated file's offsets are not in the file
            offset, length = _check_pixel_element(fp, dataset, size)
            pixel_dtype = _native_dtype(dataset, transfer_syntax, length, rows * cols)
            pixel_offset = offset if pixel_dtype else -1
    return SliceHeader(
        path=path,
        study_uid=_text(dataset, "StudyInstanceUID"),
        series_uid=_text(dataset, "SeriesInstanceUID"),
        sop_uid=_text(dataset, "SOPInstanceUID"),
        series_description=str(dataset.get("SeriesDescription", "")),
        instance_number=_number(dataset, "InstanceNumber", int),
        position=position,
        orientation=orientation,
        pixel_spacing=(spacing[0], spacing[1]),
        rows=rows,
        cols=cols,
        slice_thickness=_number(dataset, "SliceThickness", float),
        spacing_between_slices=_number(dataset, "SpacingBetweenSlices", float),
        echo_number=_number(dataset, "EchoNumbers", int),
        acquisition_number=_number(dataset, "AcquisitionNumber", int),
        temporal_position=_number(dataset, "TemporalPositionIdentifier", int),
        rescale_slope=slope,
        rescale_intercept=intercept,
        transfer_syntax=transfer_syntax,
        photometric=photometric,
        bits_stored=_number(dataset, "BitsStored", int, 0),
        pixel_offset=pixel_offset,
        pixel_dtype=pixel_dtype,
    )


# ----------------------------------------------------------------------------- pixels
def _ensure_transfer_syntax(dataset: pydicom.Dataset) -> None:
    """A bare dataset (no file meta) holds native pixels in the encoding it was read with: record it."""
    meta = dataset.get("file_meta") or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = dataset.original_encoding
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
        dataset.file_meta = meta


def _decode(path: str) -> tuple[np.ndarray, pydicom.Dataset]:
    """Stored values ``(rows, cols)`` in native byte order, MONOCHROME1 inverted."""
    dataset = None
    try:
        dataset = pydicom.dcmread(path, force=True)
        _ensure_transfer_syntax(dataset)
        stored = dataset.pixel_array
    except FileNotFoundError as error:
        raise DicomReadError(f"file disappeared: {path}") from error
    except (NotImplementedError, RuntimeError) as error:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "?")
        raise DicomReadError(
            f"cannot decode pixel data of {path} (transfer syntax {syntax}): {error}"
        ) from error
    except (*CORRUPT_FILE_ERRORS, OSError) as error:
        raise DicomReadError(
            f"corrupt or truncated pixel data in {path}: {type(error).__name__}: {error}"
        ) from error
    stored = np.asarray(stored)
    if stored.dtype.byteorder == ">" or (stored.dtype.byteorder == "=" and not np.little_endian):
        stored = stored.astype(stored.dtype.newbyteorder("="))
    if stored.ndim != 2:
        raise DicomReadError(
            f"expected one 2-D grey-scale frame in {path}, got an array of shape {stored.shape}"
        )
    if str(dataset.get("PhotometricInterpretation", "")).strip().upper() == MONOCHROME1:
        stored = _invert(stored, int(dataset.get("BitsStored", stored.dtype.itemsize * 8)))
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
    bits = dtype.itemsize * 8
    if 0 < header.bits_stored < bits:
        unused = bits - header.bits_stored
        if dtype.kind == "i":
            stored = (stored << unused) >> unused
        else:
            stored = stored & ((1 << header.bits_stored) - 1)
    if header.photometric == MONOCHROME1:
        stored = _invert(stored, header.bits_stored or bits)
    return stored


def _invert(stored: np.ndarray, bits_stored: int) -> np.ndarray:
    """MONOCHROME1 -> MONOCHROME2 in the stored-value domain: ``max + min - v`` of the stored range."""
    if stored.dtype.kind == "i":
        return (-1 - stored.astype(np.int64)).astype(stored.dtype)
    return ((1 << bits_stored) - 1 - stored.astype(np.int64)).astype(stored.dtype)


def _rescaled(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Rescaled values: the stored array itself for the identity rescale, int64 when slope and intercept
    are whole numbers (exact), else float64."""
    if slope == 1 and intercept == 0 and stored.dtype.kind in "iu":
        return stored
    if slope == int(slope) and intercept == int(intercept):
        out = stored.astype(np.int64)
        if slope != 1:
            out *= int(slope)
        if intercept != 0:
            out += int(intercept)
        return out
    return stored.astype(np.float64) * slope + intercept


INTEGER_CANDIDATES = (np.uint8, np.uint16, np.int16, np.int32)


def common_dtype(arrays: list[np.ndarray], stored_dtypes: list[np.dtype]) -> np.dtype:
    """One dtype for a stack: the stored integer type when every rescaled value fits it, else the
    smallest of uint16/int16/int32 that holds them all, else float32 (non-integer rescale)."""
    if any(a.dtype.kind == "f" for a in arrays):
        return np.dtype(np.float32)
    lo = min(int(a.min()) for a in arrays)
    hi = max(int(a.max()) for a in arrays)
    stored = np.result_type(*stored_dtypes)
    for candidate in (stored, *INTEGER_CANDIDATES[1:]):
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.float32)


def _stored_of(header: SliceHeader) -> np.ndarray:
    """Stored values ``(rows, cols)`` of one slice (native byte order, MONOCHROME1 inverted), not rescaled."""
    if header.pixel_offset >= 0 and header.pixel_dtype:
        stored = _read_native(header)
    else:
        stored = _decode(header.path)[0]
    if stored.shape != (header.rows, header.cols):
        raise DicomReadError(
            f"pixel array of shape {stored.shape} does not match Rows x Columns {(header.rows, header.cols)}"
        )
    return stored


def _pixels_of(item) -> tuple[np.ndarray, np.dtype, int, int]:
    """``(rescaled, stored dtype, rows, cols)`` of a path or SliceHeader."""
    if isinstance(item, SliceHeader):
        stored = _read_native(item) if item.pixel_offset >= 0 and item.pixel_dtype else _decode(item.path)[0]
        slope, intercept, rows, cols = item.rescale_slope, item.rescale_intercept, item.rows, item.cols
    else:
        stored, dataset = _decode(os.fspath(item))
        slope, intercept = _rescale(dataset)
        rows, cols = int(dataset.Rows), int(dataset.Columns)
    if stored.shape != (rows, cols):
        raise DicomReadError(
            f"pixel array of shape {stored.shape} does not match Rows x Columns {(rows, cols)}"
        )
    return _rescaled(stored, slope, intercept), stored.dtype, rows, cols


def read_pixels(path_or_header: str | Path | SliceHeader) -> np.ndarray:
    """Decoded pixels ``(rows, cols)`` with RescaleSlope/Intercept applied (stored dtype when it holds the
    values exactly, else the dtype ``common_dtype`` picks)."""
    values, stored_dtype, _, _ = _pixels_of(path_or_header)
    return values.astype(common_dtype([values], [stored_dtype]), copy=False)


def read_stack(headers: list[SliceHeader]) -> np.ndarray:
    """Pixels of a stack ``(n, rows, cols)`` in the order given, in one common dtype for the stack."""
    if not headers:
        raise DicomReadError("read_stack needs at least one header")
    values, stored = [], []
    for header in headers:
        array, stored_dtype, _, _ = _pixels_of(header)
        values.append(array)
        stored.append(stored_dtype)
    shapes = {a.shape for a in values}
    if len(shapes) != 1:
        raise DicomReadError(f"slices of one stack must share Rows x Columns, got {sorted(shapes)}")
    dtype = common_dtype(values, stored)
    out = np.empty((len(values), *values[0].shape), dtype=dtype)
    for k, array in enumerate(values):
        out[k] = array
    return out


def read_stack_stored(headers: list[SliceHeader]) -> tuple[np.ndarray, float, float]:
    """Stored values of a stack with one rescale: ``(stored (n, rows, cols), slope, intercept)`` such that
    ``stored * slope + intercept`` are the values ``read_stack`` returns (like NIfTI's ``scl_slope``/
    ``scl_inter`` or CF ``scale_factor``/``add_offset``). ``stored`` keeps one integer dtype (the smallest
    of the stored types that holds every slice). When the slices do not share one RescaleSlope/Intercept,
    or the pixels are not integers, this is ``(read_stack(headers), 1.0, 0.0)``."""
    if not headers:
        raise DicomReadError("read_stack_stored needs at least one header")
    rescales = {(h.rescale_slope, h.rescale_intercept) for h in headers}
    if len(rescales) != 1:
        return read_stack(headers), 1.0, 0.0
    ((slope, intercept),) = rescales
    arrays = [_stored_of(h) for h in headers]
    if len({a.shape for a in arrays}) != 1:
        raise DicomReadError(
            f"slices of one stack must share Rows x Columns, got {sorted({a.shape for a in arrays})}"
        )
    if any(a.dtype.kind not in "iu" for a in arrays):
        return read_stack(headers), 1.0, 0.0
    dtype = common_dtype(arrays, [a.dtype for a in arrays])
    out = np.empty((len(arrays), *arrays[0].shape), dtype=dtype)
    for k, array in enumerate(arrays):
        out[k] = array
    return out, float(slope), float(intercept)
