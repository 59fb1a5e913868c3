"""``read_header`` / ``read_headers``: a file's header without its pixels, as a ``SliceHeader``.

pydicom is the reference reader (``_read_header``). The fast scan (``fastscan``) is a private backend
behind the same functions: the common encodings are scanned without pydicom, and every other file, and
every file the scan is unsure of, is read with pydicom. Both give the same header (tested on every test
file and on synthetic ones: ``tests/spinedata/test_dicom_fastscan.py``). A multi-frame file gives one header
per frame (``multiframe``).
"""

from __future__ import annotations

import os
import struct

from spinedata.dicom.dataset import corrupt_file_errors, dataset_values, little_endian, opened, pixel_element
from spinedata.dicom.elements import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    HEADER_TAGS,
    SCAN_TAGS,
    scanned_values,
)
from spinedata.dicom.fastscan import ScannedHeader, scan
from spinedata.dicom.limits import DEFAULT_LIMITS, ReadLimits, check_regular_file, contain
from spinedata.dicom.multiframe import read_frame_headers
from spinedata.dicom.sliceheader import SliceHeader, build_header
from spinedata.errors import DicomReadError, MultiFrameFile

SCAN_CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
"""Character sets whose SeriesDescription the scan decodes itself (others: pydicom)."""


def read_header(path, limits: ReadLimits = DEFAULT_LIMITS) -> SliceHeader:
    """Read one file's header (no pixels). Raises ``DicomReadError`` with the reason when the file is not
    a readable single-frame image with ImagePositionPatient, ImageOrientationPatient and PixelSpacing, or
    declares more pixel data than ``limits`` allow.

    The common encodings are scanned without pydicom (``spinedata.dicom.fastscan``); every other file, and
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


@contain
def read_headers(path, limits: ReadLimits = DEFAULT_LIMITS) -> list[SliceHeader]:
    """Headers of every image in one file: ``[read_header(path)]`` for a single-frame file, one header per
    frame for a multi-frame file (enhanced MR and other files with per-frame functional groups; see
    ``multiframe``). Raises ``DicomReadError`` with the reason when the file gives no usable image, for any
    failure but an interrupt (``limits.contained``)."""
    try:
        return [read_header(path, limits)]
    except MultiFrameFile:
        return read_frame_headers(os.fspath(path), limits)


class _NotScannable(Exception):
    """A wanted element has a VR the scan leaves to pydicom."""


def _header_from_scan(path: str, scanned: ScannedHeader, limits: ReadLimits = DEFAULT_LIMITS) -> SliceHeader | None:
    """The header from scanned raw values, or None when pydicom must read the file (a value the scan
    does not convert exactly as pydicom would)."""
    raw = scanned.values

    def values(keyword: str) -> list | None:
        item = raw.get(HEADER_TAGS[keyword])
        if item is None:
            return None
        found = scanned_values(*item)
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
        return build_header(path, values, text, scanned.transfer_syntax, True,
                            lambda: (scanned.pixel_offset, scanned.pixel_length), scanned.size, limits)
    except _NotScannable:
        return None


def _read_header(path: str, limits: ReadLimits = DEFAULT_LIMITS) -> SliceHeader:
    """The header read with pydicom (the reference reader)."""
    with opened(path) as (dataset, fp, size, syntax):
        # a deflated file is read whole by pydicom (the position in the file says nothing about the data set)
        if fp.tell() >= size and syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            raise DicomReadError(
                f"no pixel data (the file ends after {size} bytes of header; truncated, or not an image)"
            )
        return build_header(path, dataset_values(dataset), str(dataset.get("SeriesDescription", "")),
                            syntax, little_endian(dataset),
                            lambda: pixel_element(fp, dataset, size, syntax), size, limits)
