"""Reading DICOM files: headers only (fast, for grouping into stacks) and pixels (decoded, rescaled).

``read_header`` parses a file up to its pixel data (``stop_before_pixels``) and checks that it is a
single-frame image with geometry; anything else raises ``DicomReadError`` with a precise reason, which
``spine ingest`` turns into a report line. ``read_pixels`` / ``read_stack`` decode the pixel data with
pydicom's plugins (uncompressed, RLE, JPEG baseline/lossless, JPEG-LS, JPEG 2000 via pylibjpeg) and apply
RescaleSlope/RescaleIntercept.

Decisions (see ``docs/geometry.md``):

* MONOCHROME1 images are inverted in the stored-value domain (``max_stored + min_stored - v``) before the
  rescale, so brighter is always higher, as in MONOCHROME2.
* Multi-frame files (NumberOfFrames > 1, e.g. enhanced MR) give one header per frame (``read_headers``):
  each frame's position, orientation, pixel spacing and rescale come from its functional groups
  (per-frame first, then shared), its ``instance_number`` is its frame number (1-based) and ``frame`` its
  index. ``read_header`` reads single-frame files only and raises ``MultiFrameFile`` for the others.
  A multi-frame file without per-frame positions, and Siemens mosaics (ImageType MOSAIC), are rejected
  (``read_pixels`` still decodes a mosaic's tiled image as it is stored).
"""

from __future__ import annotations

import functools
import math
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinedata.dicomscan import LONG_VRS, PIXEL_DATA, UNDEFINED, ScannedHeader, scan
from spinedata.errors import DicomReadError, GeometryError, MultiFrameFile
from spinedata.geometry import geometry_problem, unit_orientation

RAW_DATASET_GROUPS = {0x0002, 0x0008}
"""A file without the 128-byte preamble is read with ``force=True`` only if it starts with one of these."""

HEADER_ELEMENTS = {
    "SpecificCharacterSet": (0x00080005, "CS"), "ImageType": (0x00080008, "CS"),
    "SOPInstanceUID": (0x00080018, "UI"), "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"), "SeriesDescription": (0x0008103E, "LO"),
    "InstanceNumber": (0x00200013, "IS"), "ImagePositionPatient": (0x00200032, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"), "PixelSpacing": (0x00280030, "DS"),
    "Rows": (0x00280010, "US"), "Columns": (0x00280011, "US"), "NumberOfFrames": (0x00280008, "IS"),
    "SamplesPerPixel": (0x00280002, "US"), "PhotometricInterpretation": (0x00280004, "CS"),
    "BitsAllocated": (0x00280100, "US"), "BitsStored": (0x00280101, "US"),
    "PixelRepresentation": (0x00280103, "US"), "SliceThickness": (0x00180050, "DS"),
    "SpacingBetweenSlices": (0x00180088, "DS"), "EchoNumbers": (0x00180086, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"), "TemporalPositionIdentifier": (0x00200100, "IS"),
    "RescaleSlope": (0x00281053, "DS"), "RescaleIntercept": (0x00281052, "DS"),
}  # fmt: skip
"""The only elements ``read_header`` reads: keyword -> (tag, VR) of the DICOM data dictionary (checked
against pydicom's in ``tests/spinedata/test_dicomscan.py``; written out so that the scan needs no pydicom import)."""
HEADER_KEYWORDS = list(HEADER_ELEMENTS)
HEADER_TAGS = {keyword: tag for keyword, (tag, _) in HEADER_ELEMENTS.items()}

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

MONOCHROME1 = "MONOCHROME1"
SUPPORTED_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2"}
SUPPORTED_BITS_ALLOCATED = (1, 8, 16, 32)
"""BitsAllocated of the grey-scale images read (anything else is reported before decoding)."""

DEFAULT_MAX_IMAGE_BYTES = 2 << 30
"""Decoded bytes one file may declare (Rows x Columns x frames x bytes per sample), by default: a file
declaring more is reported before anything is decoded (``ReadLimits``)."""
MAX_COMPRESSION_RATIO = 1000
"""An encapsulated (compressed) or deflated file may declare at most this many times its size in decoded
bytes (generous: RLE and JPEG of real images stay far below, though an all-zero image can go higher)..."""
COMPRESSED_FLOOR_BYTES = 16 << 20
"""... or this many decoded bytes, whichever is more, so that a small file of a blank image is never refused."""
MAX_ABS_RESCALE = 1e10
"""|RescaleSlope| and |RescaleIntercept| above this are reported (the rescaled values would not be exact
in any stored dtype, and the arithmetic could overflow)."""


@dataclass(frozen=True)
class ReadLimits:
    """What one file may declare before it is decoded: ``max_image_bytes`` decoded bytes at most (the
    memory cap), and for compressed or deflated files at most ``max_compression_ratio`` times the file's
    size (or ``compressed_floor_bytes``). Native pixel data must hold what the header declares."""

    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_compression_ratio: float = MAX_COMPRESSION_RATIO
    compressed_floor_bytes: int = COMPRESSED_FLOOR_BYTES


DEFAULT_LIMITS = ReadLimits()


def contained(error: BaseException) -> bool:
    """Whether a failure while reading one file is that file's problem (a report line), not the run's:
    everything but an interrupt or an exit. Decoders written in Rust raise ``PanicException``, a
    ``BaseException``, on damaged data; MemoryError, zlib.error or OverflowError are the file's too."""
    return not isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit)


def failure_reason(error: BaseException) -> str:
    """The report text of an unexpected failure while reading a file (one line, bounded length)."""
    if isinstance(error, MemoryError):
        return "out of memory while reading it"
    text = " ".join(str(error).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    name = type(error).__name__
    if not isinstance(error, Exception):
        return f"the decoder crashed ({name}: {text})"
    return f"unexpected {name}: {text}"


def _contain(function):
    """Any contained failure of ``function`` (see ``contained``) becomes a ``DicomReadError``."""

    @functools.wraps(function)
    def reading(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except DicomReadError:
            raise
        except BaseException as error:
            if not contained(error):
                raise
            raise DicomReadError(failure_reason(error)) from error

    return reading


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
    frame: int = -1
    """Index (0-based) of this frame in a multi-frame file; -1 for a single-frame file."""
    dimension_index: str = ""
    """A frame's DimensionIndexValues other than its place in a stack (InStackPositionNumber, position,
    StackID), joined by ``/``; ``''`` for single-frame files. Frames at the same positions that differ in
    it (echoes, b-values, phases) belong to different volumes."""
    image_type: str = ""
    """ImageType (a frame's FrameType in an enhanced MR file), upper case, values joined by ``\\``, e.g.
    ``ORIGINAL\\PRIMARY\\M\\DIXON\\W``; tells apart volumes at the same positions (Dixon water / fat)."""
    bits_allocated: int = 16
    """BitsAllocated."""
    pixel_representation: int = 0
    """PixelRepresentation (1: signed)."""
    samples_per_pixel: int = 1
    """SamplesPerPixel (always 1: only grey-scale images are read)."""

    @property
    def pixel_format(self) -> tuple[int, int, int, int, str]:
        """``(BitsAllocated, BitsStored, PixelRepresentation, SamplesPerPixel, PhotometricInterpretation)``:
        slices of one stack share it (``build_stacks`` never merges two formats)."""
        return (self.bits_allocated, self.bits_stored, self.pixel_representation, self.samples_per_pixel,
                self.photometric)  # fmt: skip

    @property
    def where(self) -> str:
        """The file, and the frame for a frame of a multi-frame file (for messages)."""
        return self.path if self.frame < 0 else f"{self.path} (frame {self.frame + 1})"


@dataclass(frozen=True)
class Skipped:
    """One line of an ingest report: a file (or group of files) left out, and why."""

    path: str
    reason: str
    study_id: str = ""
    series_id: str = ""


# ----------------------------------------------------------------------------- header
def _pydicom():
    """pydicom, imported on first use (0.2-0.3 s): files the scan reads never need it."""
    import pydicom

    return pydicom


def corrupt_file_errors() -> tuple[type[Exception], ...]:
    """What pydicom raises on damaged files (found by fuzzing real files with flipped and cut bytes)."""
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (InvalidDicomError, BytesLengthException, NotImplementedError, ValueError, TypeError, KeyError,
            IndexError, AttributeError, EOFError, OverflowError, struct.error)  # fmt: skip


def _open_dataset(path: str, fp, specific_tags: list[str] | None = HEADER_KEYWORDS):
    """Parse up to the pixel data (only ``specific_tags``; None: every element); ``force=True`` only for
    preamble-less files that start like a dataset."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    CORRUPT_FILE_ERRORS = corrupt_file_errors()  # noqa: N806 - the tuple, as an except clause wants it
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=specific_tags)
    except InvalidDicomError:
        fp.seek(0)
        start = fp.read(4)
        if len(start) < 4 or struct.unpack("<H", start[:2])[0] not in RAW_DATASET_GROUPS:
            raise DicomReadError("not a DICOM file (no 'DICM' marker and no dataset at the start)") from None
        fp.seek(0)
        try:
            return pydicom.dcmread(fp, stop_before_pixels=True, force=True, specific_tags=specific_tags)
        except CORRUPT_FILE_ERRORS as error:
            raise DicomReadError(f"not a DICOM file ({type(error).__name__}: {error})") from error
    except (EOFError, struct.error, OSError, ValueError, KeyError, TypeError) as error:
        raise DicomReadError(f"truncated or corrupt header ({type(error).__name__}: {error})") from error


def _check_pixel_element(fp, dataset, size: int) -> tuple[int, int]:
    """After ``stop_before_pixels`` the file points at the pixel data element: check it is there and whole.
    Returns ``(offset of the value, its length)`` (length UNDEFINED when encapsulated)."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        raise DicomReadError(f"no pixel data (the file ends after {start} bytes of header; truncated?)")
    implicit, little = dataset.original_encoding
    endian = "<" if little in (True, None) else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    if group << 16 | element != PIXEL_DATA:
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
    if length != UNDEFINED and length > available:
        raise DicomReadError(f"truncated pixel data (expected {length} bytes, the file holds {available})")
    return start + header_len, length


NATIVE_SYNTAXES = {IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, ""}
"""Transfer syntaxes whose pixel values lie in the file as they are ('' = bare dataset)."""


def _native_dtype(values, little: bool, transfer_syntax: str, length: int, n_pixels: int) -> str:
    """The dtype of native single-sample pixels that fill the element, or '' (decode with pydicom)."""
    if transfer_syntax not in NATIVE_SYNTAXES or length == UNDEFINED:
        return ""
    bits = _number(values, "BitsAllocated", int, 0)
    samples = _number(values, "SamplesPerPixel", int, 1)
    if bits not in (8, 16, 32) or samples != 1:
        return ""
    if length < n_pixels * bits // 8:
        raise DicomReadError(
            f"pixel data holds {length} bytes, fewer than Rows x Columns x {bits // 8} = {n_pixels * bits // 8}"
        )
    signed = _number(values, "PixelRepresentation", int, 0) == 1
    return f"{'<' if little else '>'}{'i' if signed else 'u'}{bits // 8}"


TEXT_VRS = {"DS", "IS", "UI", "CS"}
"""Value representations read straight from their bytes (pydicom's conversion is a third of the header
time); anything else goes through pydicom."""

Values = Callable[[str], "list | tuple | None"]
"""``values(keyword)``: the values of one header element (str for DS/IS/UI/CS, int for US), None when
absent or empty."""


def _raw_values(vr: str, raw: bytes, little: bool = True) -> list | None:
    """Values of a DS/IS/UI/CS (text) or US element from its raw bytes; ``NotImplemented`` for other VRs."""
    if vr in TEXT_VRS:
        parts = [part.strip(" \x00") for part in raw.decode("latin-1").split("\\")]
        return None if all(part == "" for part in parts) else parts
    if vr == "US" and len(raw) % 2 == 0:
        return list(struct.unpack(f"{'<' if little else '>'}{len(raw) // 2}H", raw)) or None
    return NotImplemented


@functools.lru_cache(maxsize=4096)
def _scanned_values(vr: str, raw: bytes) -> tuple | None:
    """``_raw_values`` of a scanned (little-endian) element as a tuple, remembered: the files of a series
    repeat most of their values byte for byte (orientation, spacing, matrix, UIDs), so most lookups skip
    the decoding (a pure function of its arguments: the cache never changes a result)."""
    found = _raw_values(vr, raw)
    return found if found is None or found is NotImplemented else tuple(found)


def _dataset_values(dataset) -> Values:
    """``values`` of a pydicom data set (raw elements converted from their bytes where possible)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.multival import MultiValue

    def values(keyword: str) -> list | None:
        tag, vr = HEADER_ELEMENTS[keyword]
        element = dataset.get_item(tag)
        if element is None or element.value is None:
            return None
        if isinstance(element, RawDataElement):
            found = _raw_values(element.VR or vr, element.value, element.is_little_endian)
            if found is not NotImplemented:
                return found
        value = dataset[keyword].value
        if value is None or value == "":
            return None
        return list(value) if isinstance(value, MultiValue | list | tuple) else [value]

    return values


def _as_int(value) -> int:
    """IS values: '12', ' 12 ', and the common but invalid '12.0'."""
    try:
        return int(value)
    except ValueError:
        number = float(value)
        if not number.is_integer():
            raise
        return int(number)


def _number(values: Values, keyword: str, cast, default=None):
    """The first value of an element as ``cast`` (int or float), or ``default`` when absent/empty;
    unparsable values raise DicomReadError."""
    found = values(keyword)
    if not found or found[0] == "":
        return default
    try:
        return _as_int(found[0]) if cast is int else cast(found[0])
    except (TypeError, ValueError) as error:
        raise DicomReadError(f"invalid {keyword} {found[0]!r}") from error


def _text(values: Values, keyword: str) -> str:
    """A UID or code string, '' when absent."""
    found = values(keyword)
    return "\\".join(str(v) for v in found) if found else ""


def _rescale(values: Values) -> tuple[float, float]:
    """``(RescaleSlope, RescaleIntercept)``, ``(1, 0)`` when absent; a zero or non-finite slope is an error."""
    slope = _number(values, "RescaleSlope", float, 1.0)
    intercept = _number(values, "RescaleIntercept", float, 0.0)
    if slope == 0 or not math.isfinite(slope) or not math.isfinite(intercept):
        raise DicomReadError(f"invalid rescale: RescaleSlope {slope}, RescaleIntercept {intercept}")
    if abs(slope) > MAX_ABS_RESCALE or abs(intercept) > MAX_ABS_RESCALE:
        raise DicomReadError(
            f"invalid rescale: RescaleSlope {slope:g}, RescaleIntercept {intercept:g} (implausible: "
            f"beyond +-{MAX_ABS_RESCALE:g})"
        )
    return slope, intercept


def _vector(values: Values, keyword: str, length: int) -> tuple[float, ...]:
    found = values(keyword)
    if not found:
        raise DicomReadError(f"no {keyword}: the file is not an image with geometry")
    return _finite_floats(tuple(found), keyword, length)


@functools.lru_cache(maxsize=4096)
def _finite_floats(found: tuple, keyword: str, length: int) -> tuple[float, ...]:
    """``length`` finite numbers from an element's values (remembered, like ``_scanned_values``: a series
    repeats its orientation and spacing in every file)."""
    try:
        numbers = tuple(float(v) for v in found)
    except (TypeError, ValueError) as error:
        raise DicomReadError(f"invalid {keyword} {list(found)!r}") from error
    if len(numbers) != length or not all(math.isfinite(v) for v in numbers):
        raise DicomReadError(f"{keyword} must be {length} finite numbers, got {list(numbers)}")
    return numbers


FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
              stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder"}  # fmt: skip


def check_regular_file(path: str) -> None:
    """``DicomReadError`` unless ``path`` is a regular file (links followed): a FIFO, socket or device is
    never opened (reading a FIFO would wait forever), a broken link is reported as one."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if os.path.islink(path):
            raise DicomReadError("cannot open file (a broken symbolic link)") from error
        raise DicomReadError(f"cannot open file ({error.strerror})") from error
    if not stat.S_ISREG(mode):
        kind = FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise DicomReadError(f"not a regular file ({kind}): not opened")


def read_header(path, limits: ReadLimits = DEFAULT_LIMITS) -> SliceHeader:
    """Read one file's header (no pixels). Raises ``DicomReadError`` with the reason when the file is not
    a readable single-frame image with ImagePositionPatient, ImageOrientationPatient and PixelSpacing, or
    declares more pixel data than ``limits`` allow.

    The common encodings are scanned without pydicom (``spinedata.dicomscan``); every other file, and
    every file that scan is unsure of, is read with pydicom. Both give the same header."""
    path = os.fspath(path)
    check_regular_file(path)
    scanned = scan(path, SCAN_TAGS)
    if scanned is not None:
        try:
            header = _header_from_scan(path, scanned, limits)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, struct.error):
            header = None  # a value the scan did not expect: pydicom reads the file and names the problem
        if header is not None:
            return header
    try:
        return _read_header(path, limits)
    except corrupt_file_errors() as error:
        raise DicomReadError(f"corrupt header ({type(error).__name__}: {error})") from error


SCAN_TAGS = dict(HEADER_ELEMENTS.values())
"""The header elements and their VRs, for ``dicomscan.scan``."""
SCAN_CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
"""Character sets whose SeriesDescription the scan decodes itself (others: pydicom)."""


def _header_from_scan(path: str, scanned: ScannedHeader, limits: ReadLimits = DEFAULT_LIMITS) -> SliceHeader | None:
    """The header from scanned raw values, or None when pydicom must read the file (a value the scan
    does not convert exactly as pydicom would)."""
    raw = scanned.values

    def values(keyword: str) -> list | None:
        item = raw.get(HEADER_TAGS[keyword])
        if item is None:
            return None
        found = _scanned_values(*item)
        if found is NotImplemented:
            raise _NotScannable
        return found

    try:
        charset = "\\".join(values("SpecificCharacterSet") or [])
        description = b""
        if HEADER_TAGS["SeriesDescription"] in raw:
            description = raw[HEADER_TAGS["SeriesDescription"]][1]
        text = ""
        if description.strip(b" \x00"):
            if charset not in SCAN_CHARSETS or b"\\" in description:
                return None
            try:
                text = description.decode(SCAN_CHARSETS[charset]).rstrip(" \x00")
            except UnicodeDecodeError:
                return None
        return _build_header(path, values, text, scanned.transfer_syntax, True,
                             lambda: (scanned.pixel_offset, scanned.pixel_length), scanned.size, limits)
    except _NotScannable:
        return None


class _NotScannable(Exception):
    """A wanted element has a VR the scan leaves to pydicom."""


def _open_file(path: str):
    """``(size in bytes, open binary file)``; ``DicomReadError`` when it cannot be opened."""
    try:
        return os.path.getsize(path), open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as error:
        raise DicomReadError(f"cannot open file ({error.strerror})") from error


def _transfer_syntax(dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _pixel_element(fp, dataset, size: int, transfer_syntax: str) -> tuple[int, int]:
    """``_check_pixel_element``, or ``(-1, UNDEFINED)`` for a deflated file (its offsets are not the file's)."""
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return -1, UNDEFINED
    return _check_pixel_element(fp, dataset, size)


def _read_header(path: str, limits: ReadLimits = DEFAULT_LIMITS) -> SliceHeader:
    size, fp = _open_file(path)
    with fp:
        dataset = _open_dataset(path, fp)
        transfer_syntax = _transfer_syntax(dataset)
        # a deflated file is read whole by pydicom (the position in the file says nothing about the data set)
        if fp.tell() >= size and transfer_syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            raise DicomReadError(
                f"no pixel data (the file ends after {size} bytes of header; truncated, or not an image)"
            )
        _, little = dataset.original_encoding
        return _build_header(path, _dataset_values(dataset), str(dataset.get("SeriesDescription", "")),
                             transfer_syntax, little in (True, None),
                             lambda: _pixel_element(fp, dataset, size, transfer_syntax), size, limits)


@_contain
def read_headers(path, limits: ReadLimits = DEFAULT_LIMITS) -> list[SliceHeader]:
    """Headers of every image in one file: ``[read_header(path)]`` for a single-frame file, one header per
    frame for a multi-frame file (enhanced MR and other files with per-frame functional groups; see the
    module notes). Raises ``DicomReadError`` with the reason when the file gives no usable image, for any
    failure but an interrupt (``contained``)."""
    try:
        return [read_header(path, limits)]
    except MultiFrameFile:
        return _read_frame_headers(os.fspath(path), limits)


FRAME_ELEMENTS = {
    "ImagePositionPatient": ("PlanePositionSequence", "ImagePositionPatient"),
    "ImageOrientationPatient": ("PlaneOrientationSequence", "ImageOrientationPatient"),
    "PixelSpacing": ("PixelMeasuresSequence", "PixelSpacing"),
    "SliceThickness": ("PixelMeasuresSequence", "SliceThickness"),
    "SpacingBetweenSlices": ("PixelMeasuresSequence", "SpacingBetweenSlices"),
    "RescaleSlope": ("PixelValueTransformationSequence", "RescaleSlope"),
    "RescaleIntercept": ("PixelValueTransformationSequence", "RescaleIntercept"),
    "TemporalPositionIdentifier": ("FrameContentSequence", "TemporalPositionIndex"),
    "AcquisitionNumber": ("FrameContentSequence", "FrameAcquisitionNumber"),
    "ImageType": ("MRImageFrameTypeSequence", "FrameType"),
}
"""Header values a multi-frame file keeps per frame: keyword -> (functional group macro, element in it).
Looked up in the frame's item of PerFrameFunctionalGroupsSequence, then in SharedFunctionalGroupsSequence,
then (except the position) at the top level."""


def _functional_group_value(groups: list, macro: str, keyword: str):
    """The first value of ``macro[0].keyword`` found in ``groups`` (functional group items, in order)."""
    for group in groups:
        sequence = group.get(macro) if group is not None else None
        if sequence and keyword in sequence[0]:
            value = sequence[0][keyword].value
            if value is not None and value != "":
                return value
    return None


PLACE_IN_STACK_POINTERS = frozenset({0x00209056, 0x00209057, 0x00200032})
"""DimensionIndexPointers of StackID, InStackPositionNumber and ImagePositionPatient: where a frame lies,
which the positions already say; the other dimensions of a multi-frame file tell volumes apart."""


def _dimension_indices(dataset, per_frame: list) -> list[str]:
    """Each frame's ``dimension_index`` (see ``SliceHeader``); ``''`` for every frame without a
    DimensionIndexSequence or when the values do not match it."""
    pointers = [int(item.DimensionIndexPointer) for item in dataset.get("DimensionIndexSequence") or []
                if "DimensionIndexPointer" in item]  # fmt: skip
    keep = [k for k, pointer in enumerate(pointers) if pointer not in PLACE_IN_STACK_POINTERS]
    found = []
    for item in per_frame:
        content = item.get("FrameContentSequence") if item is not None else None
        values = content[0].get("DimensionIndexValues") if content else None
        values = [values] if isinstance(values, int) else list(values or [])
        found.append("/".join(str(values[k]) for k in keep) if keep and len(values) == len(pointers) else "")
    return found


def _read_frame_headers(path: str, limits: ReadLimits) -> list[SliceHeader]:
    """One header per frame of a multi-frame file (read with pydicom, functional groups included)."""
    try:
        return _frame_headers(path, limits)
    except corrupt_file_errors() as error:  # a damaged value deep in the functional groups
        raise DicomReadError(f"corrupt multi-frame header ({type(error).__name__}: {error})") from error


def _frame_headers(path: str, limits: ReadLimits) -> list[SliceHeader]:
    from pydicom.multival import MultiValue

    size, fp = _open_file(path)
    with fp:
        try:
            dataset = _open_dataset(path, fp, specific_tags=None)
        except corrupt_file_errors() as error:
            raise DicomReadError(f"corrupt header ({type(error).__name__}: {error})") from error
        transfer_syntax = _transfer_syntax(dataset)
        _, little = dataset.original_encoding
        little = little in (True, None)
        offset, length = _pixel_element(fp, dataset, size, transfer_syntax)
    top = _dataset_values(dataset)
    frames = _number(top, "NumberOfFrames", int, 1)
    shared = list(dataset.get("SharedFunctionalGroupsSequence") or [None])[:1]
    per_frame = list(dataset.get("PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) != frames:
        raise DicomReadError(
            f"multi-frame file with {frames} frames but {len(per_frame)} items of PerFrameFunctionalGroupsSequence"
        )
    rows, cols = _number(top, "Rows", int, 0), _number(top, "Columns", int, 0)
    bits = _number(top, "BitsAllocated", int, 0)
    frame_bytes = rows * cols * bits // 8
    if length != UNDEFINED and offset >= 0 and bits % 8 == 0 and length < frames * frame_bytes:
        raise DicomReadError(
            f"truncated pixel data: {length} bytes hold {length // max(frame_bytes, 1)} of {frames} frames"
        )
    _check_declared(top, frames, rows, cols, transfer_syntax, length, size, limits)  # before the loop
    description = str(dataset.get("SeriesDescription", ""))
    dimensions = _dimension_indices(dataset, per_frame) if per_frame else [""] * frames
    headers = []
    for frame in range(frames):
        groups = [per_frame[frame] if per_frame else None, *shared]

        def values(keyword: str, groups=groups, frame=frame) -> list | None:
            if keyword == "InstanceNumber":
                return [str(frame + 1)]
            if keyword in FRAME_ELEMENTS:
                value = _functional_group_value(groups, *FRAME_ELEMENTS[keyword])
                if value is not None:
                    return [str(v) for v in (value if isinstance(value, MultiValue | list | tuple) else [value])]
                if keyword == "ImagePositionPatient":
                    raise DicomReadError(
                        f"multi-frame file ({frames} frames) without PlanePositionSequence in its functional "
                        "groups: the frames' positions are unknown"
                    )
            return top(keyword)

        if offset < 0 or length == UNDEFINED:
            element = (-1, UNDEFINED)
        else:
            element = (offset + frame * frame_bytes, frame_bytes)
        headers.append(_build_header(path, values, description, transfer_syntax, little,
                                     lambda element=element: element, size, limits, frame=frame,
                                     dimension_index=dimensions[frame]))  # fmt: skip
    return headers


def _itemsize(bits: int) -> int:
    """Bytes per decoded sample of ``bits`` allocated bits (what a decoder hands out: 1-bit pixels as bytes)."""
    return 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8


def _check_declared(values: Values, frames: int, rows: int, cols: int, transfer_syntax: str, length: int,
                    size: int, limits: ReadLimits) -> None:
    """Before anything is decoded (header arithmetic only): what the header declares (frames x rows x
    columns x bytes per sample) must fit ``limits.max_image_bytes``; native pixel data must hold it; an
    encapsulated or deflated file may declare at most ``max_compression_ratio`` times its size (or
    ``compressed_floor_bytes``), and at most one frame per 8 bytes of the file (a frame of encapsulated
    pixel data is at least one item)."""
    if frames < 1:
        raise DicomReadError(f"invalid NumberOfFrames {frames}")
    bits = _number(values, "BitsAllocated", int, 0)
    samples = _number(values, "SamplesPerPixel", int, 1)
    if bits not in SUPPORTED_BITS_ALLOCATED:
        raise DicomReadError(f"BitsAllocated {bits} is not supported (expected one of {SUPPORTED_BITS_ALLOCATED})")
    if samples != 1:
        raise DicomReadError(f"SamplesPerPixel {samples}: not a grey-scale image")
    decoded = frames * rows * cols * _itemsize(bits)
    shape = f"{frames} x {rows} x {cols}" if frames > 1 else f"{rows} x {cols}"
    if decoded > limits.max_image_bytes:
        raise DicomReadError(
            f"declares {shape} pixels ({decoded / 2**20:.0f} MiB decoded), more than the limit of "
            f"{limits.max_image_bytes / 2**20:.0f} MiB per file: not decoded"
        )
    if length == UNDEFINED or transfer_syntax not in NATIVE_SYNTAXES:  # encapsulated or deflated
        if decoded > max(size * limits.max_compression_ratio, limits.compressed_floor_bytes):
            raise DicomReadError(
                f"declares {shape} pixels ({decoded} bytes decoded) in a file of {size} bytes, more than "
                f"{limits.max_compression_ratio:g} times its size: not decoded"
            )
        if frames > max(size // 8, 1):
            raise DicomReadError(f"declares {frames} frames, more than a file of {size} bytes can hold")
    else:
        needed = -(-frames * rows * cols * bits // 8)
        if length < needed:
            raise DicomReadError(
                f"truncated pixel data (the header declares {shape} pixels of {bits} bits, {needed} bytes; "
                f"the pixel data hold {length})"
            )


def _build_header(path: str, values: Values, description: str, transfer_syntax: str, little: bool,
                  pixel_element: Callable[[], tuple[int, int]], size: int, limits: ReadLimits,
                  frame: int = -1, dimension_index: str = "") -> SliceHeader:
    """Check and convert the header values of one file or frame (shared by the scan and pydicom);
    ``pixel_element()`` -> (offset, length) of the PixelData value (of this frame), called last; ``size``:
    the file's size in bytes (what it can hold, checked against what it declares: ``_check_declared``)."""
    rows, cols = _number(values, "Rows", int), _number(values, "Columns", int)
    if not rows or not cols:
        raise DicomReadError("not an image (no Rows/Columns)")
    frames = _number(values, "NumberOfFrames", int, 1)
    if frames > 1 and frame < 0:
        raise MultiFrameFile(f"multi-frame file ({frames} frames): read its frames with read_headers")
    image_type = [str(v).strip().upper() for v in (values("ImageType") or [])]
    if "MOSAIC" in image_type:
        raise DicomReadError(
            "Siemens mosaic (several slices tiled in one image) is not supported; convert it with dcm2niix"
        )
    photometric = (_text(values, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomReadError(f"PhotometricInterpretation {photometric} is not a grey-scale image")
    position = _vector(values, "ImagePositionPatient", 3)
    try:
        orientation = unit_orientation(_vector(values, "ImageOrientationPatient", 6))
    except GeometryError as error:
        raise DicomReadError(str(error)) from error
    spacing = _vector(values, "PixelSpacing", 2)
    problem = geometry_problem(position, spacing)
    if problem:
        raise DicomReadError(problem)
    slope, intercept = _rescale(values)
    offset, length = pixel_element()
    if frame < 0:  # a multi-frame file is checked whole, before its frames (``_frame_headers``)
        _check_declared(values, frames, rows, cols, transfer_syntax, length, size, limits)
    pixel_dtype = "" if offset < 0 else _native_dtype(values, little, transfer_syntax, length, rows * cols)
    return SliceHeader(
        path=path,
        study_uid=_text(values, "StudyInstanceUID"),
        series_uid=_text(values, "SeriesInstanceUID"),
        sop_uid=_text(values, "SOPInstanceUID"),
        series_description=description,
        instance_number=_number(values, "InstanceNumber", int),
        position=position,
        orientation=orientation,
        pixel_spacing=(spacing[0], spacing[1]),
        rows=rows,
        cols=cols,
        slice_thickness=_number(values, "SliceThickness", float),
        spacing_between_slices=_number(values, "SpacingBetweenSlices", float),
        echo_number=_number(values, "EchoNumbers", int),
        acquisition_number=_number(values, "AcquisitionNumber", int),
        temporal_position=_number(values, "TemporalPositionIdentifier", int),
        rescale_slope=slope,
        rescale_intercept=intercept,
        transfer_syntax=transfer_syntax,
        photometric=photometric,
        bits_stored=_number(values, "BitsStored", int, 0),
        pixel_offset=offset if pixel_dtype else -1,
        pixel_dtype=pixel_dtype,
        frame=frame,
        dimension_index=dimension_index,
        image_type="\\".join(image_type),
        bits_allocated=_number(values, "BitsAllocated", int, 0),
        pixel_representation=_number(values, "PixelRepresentation", int, 0),
        samples_per_pixel=_number(values, "SamplesPerPixel", int, 1),
    )


# ----------------------------------------------------------------------------- pixels
def _ensure_transfer_syntax(dataset) -> None:
    """A bare dataset (no file meta) holds native pixels in the encoding it was read with: record it."""
    from pydicom.dataset import FileMetaDataset

    meta = dataset.get("file_meta") or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = dataset.original_encoding
        meta.TransferSyntaxUID = (
            IMPLICIT_VR_LITTLE_ENDIAN if implicit else EXPLICIT_VR_LITTLE_ENDIAN if little else EXPLICIT_VR_BIG_ENDIAN
        )
        dataset.file_meta = meta


def _decode_all(path: str) -> tuple[np.ndarray, object]:
    """Stored values of every frame (``(rows, cols)``, or ``(frames, rows, cols)``) and the pydicom data set
    (native byte order, MONOCHROME1 inverted)."""
    pydicom = _pydicom()
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


def _rescaled(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Rescaled values: the stored array itself for the identity rescale; for whole-number slope and
    intercept, exact integers in the dtype ``common_dtype`` picks for them (``_whole_rescaled``; int64 when
    the stored values are not integers); else float64."""
    if slope == 1 and intercept == 0 and stored.dtype.kind in "iu":
        return stored
    if slope == int(slope) and intercept == int(intercept):
        if stored.dtype.kind in "iu":
            return _whole_rescaled(stored, int(slope), int(intercept))
        return stored.astype(np.int64) * int(slope) + int(intercept)
    return stored.astype(np.float64) * slope + intercept


INTEGER_CANDIDATES = (np.uint8, np.uint16, np.int16, np.int32)


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
        slope, intercept = _rescale(_dataset_values(dataset))
        rows, cols = int(dataset.Rows), int(dataset.Columns)
    if stored.shape != (rows, cols):
        raise DicomReadError(
            f"pixel array of shape {stored.shape} does not match Rows x Columns {(rows, cols)}"
        )
    return _rescaled(stored, slope, intercept), stored.dtype, rows, cols


@_contain
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


@_contain
def read_stack(headers: list[SliceHeader]) -> np.ndarray:
    """Pixels of a stack ``(n, rows, cols)`` in the order given, in one common dtype for the stack."""
    if not headers:
        raise DicomReadError("read_stack needs at least one header")
    rescales = {(h.rescale_slope, h.rescale_intercept) for h in headers}
    if len(rescales) == 1:
        ((slope, intercept),) = rescales
        if slope == int(slope) and intercept == int(intercept):
            native = _read_native_stack(headers)
            if native is not None:  # the values slice by slice would give, at once, in the stack's dtype
                return _rescaled(native, slope, intercept)
    values, stored = [], []
    decoded: Decoded = {}
    for header in headers:
        array, stored_dtype, _, _ = _pixels_of(header, decoded)
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


@_contain
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
    native = _read_native_stack(headers)
    if native is not None:
        return native, float(slope), float(intercept)
    decoded: Decoded = {}
    arrays = [_stored_of(h, decoded) for h in headers]
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
