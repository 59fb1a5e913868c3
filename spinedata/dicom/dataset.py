"""pydicom, the reference reader: opening a data set up to its pixel data, its values, and the pixel data
element after it. pydicom is imported on first use only: files the fast scan reads never need it."""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator

from spinedata.dicom.elements import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    HEADER_ELEMENTS,
    HEADER_KEYWORDS,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PIXEL_DATA,
    UNDEFINED,
    raw_values,
    walk,
)
from spinedata.dicom.values import Values
from spinedata.errors import DicomReadError

RAW_DATASET_GROUPS = {0x0002, 0x0008}
"""A file without the 128-byte preamble is read with ``force=True`` only if it starts with one of these."""


def pydicom():
    """pydicom, imported on first use (0.2-0.3 s): files the scan reads never need it."""
    import pydicom

    return pydicom


def corrupt_file_errors() -> tuple[type[Exception], ...]:
    """What pydicom raises on damaged files (found by fuzzing real files with flipped and cut bytes)."""
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (InvalidDicomError, BytesLengthException, NotImplementedError, ValueError, TypeError, KeyError,
            IndexError, AttributeError, EOFError, OverflowError, struct.error)  # fmt: skip


def open_file(path: str):
    """``(size in bytes, open binary file)``; ``DicomReadError`` when it cannot be opened."""
    try:
        return os.path.getsize(path), open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as error:
        raise DicomReadError(f"cannot open file ({error.strerror})") from error


def open_dataset(path: str, fp, specific_tags: list[str] | None = HEADER_KEYWORDS):
    """Parse up to the pixel data (only ``specific_tags``; None: every element); ``force=True`` only for
    preamble-less files that start like a dataset."""
    from pydicom.errors import InvalidDicomError

    CORRUPT_FILE_ERRORS = corrupt_file_errors()  # noqa: N806 - the tuple, as an except clause wants it
    try:
        return pydicom().dcmread(fp, stop_before_pixels=True, specific_tags=specific_tags)
    except InvalidDicomError:
        fp.seek(0)
        start = fp.read(4)
        if len(start) < 4 or struct.unpack("<H", start[:2])[0] not in RAW_DATASET_GROUPS:
            raise DicomReadError("not a DICOM file (no 'DICM' marker and no dataset at the start)") from None
        fp.seek(0)
        try:
            return pydicom().dcmread(fp, stop_before_pixels=True, force=True, specific_tags=specific_tags)
        except CORRUPT_FILE_ERRORS as error:
            raise DicomReadError(f"not a DICOM file ({type(error).__name__}: {error})") from error
    except (EOFError, struct.error, OSError, ValueError, KeyError, TypeError) as error:
        raise DicomReadError(f"truncated or corrupt header ({type(error).__name__}: {error})") from error


@contextlib.contextmanager
def opened(path: str, specific_tags: list[str] | None = HEADER_KEYWORDS) -> Iterator[tuple[object, object, int, str]]:
    """``(data set up to the pixel data, open file pointing at them, file size, transfer syntax)``, the file
    closed after; pydicom's errors on a damaged header become ``DicomReadError('corrupt header ...')``."""
    size, fp = open_file(path)
    with fp:
        try:
            dataset = open_dataset(path, fp, specific_tags)
        except corrupt_file_errors() as error:
            raise DicomReadError(f"corrupt header ({type(error).__name__}: {error})") from error
        yield dataset, fp, size, transfer_syntax(dataset)


def little_endian(dataset) -> bool:
    """Whether the data set was read as little endian (a bare data set of unknown encoding counts as one)."""
    return dataset.original_encoding[1] in (True, None)


def transfer_syntax(dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _check_pixel_element(fp, dataset, size: int) -> tuple[int, int]:
    """After ``stop_before_pixels`` the file points at the pixel data element: check it is there and whole.
    Returns ``(offset of the value, its length)`` (length UNDEFINED when encapsulated)."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        raise DicomReadError(f"no pixel data (the file ends after {start} bytes of header; truncated?)")
    # this element's header (stop=0); padded, so that a header cut short is found below, after the tag
    _, tag, header_len, length, _ = walk(head.ljust(12, b"\0"), 0, dataset.original_encoding[0],
                                         little=little_endian(dataset))
    if tag != PIXEL_DATA:
        raise DicomReadError(f"no pixel data (found tag ({tag >> 16:04X},{tag & 0xFFFF:04X}) instead of PixelData)")
    if header_len > len(head):
        raise DicomReadError("truncated pixel data element")
    available = size - start - header_len
    if length != UNDEFINED and length > available:
        raise DicomReadError(f"truncated pixel data (expected {length} bytes, the file holds {available})")
    return start + header_len, length


def pixel_element(fp, dataset, size: int, syntax: str) -> tuple[int, int]:
    """``(offset, length)`` of the PixelData value the file points at (checked whole), or ``(-1, UNDEFINED)``
    for a deflated file (its offsets are not the file's)."""
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return -1, UNDEFINED
    return _check_pixel_element(fp, dataset, size)


def dataset_values(dataset) -> Values:
    """``values`` of a pydicom data set (raw elements converted from their bytes where possible)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.multival import MultiValue

    def values(keyword: str) -> list | None:
        tag, vr = HEADER_ELEMENTS[keyword]
        element = dataset.get_item(tag)
        if element is None or element.value is None:
            return None
        if isinstance(element, RawDataElement):
            found = raw_values(element.VR or vr, element.value, element.is_little_endian)
            if found is not NotImplemented:
                return found
        value = dataset[keyword].value
        if value is None or value == "":
            return None
        return list(value) if isinstance(value, MultiValue | list | tuple) else [value]

    return values


def ensure_transfer_syntax(dataset) -> None:
    """A bare dataset (no file meta) holds native pixels in the encoding it was read with: record it."""
    from pydicom.dataset import FileMetaDataset

    meta = dataset.get("file_meta") or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = dataset.original_encoding
        meta.TransferSyntaxUID = (
            IMPLICIT_VR_LITTLE_ENDIAN if implicit else EXPLICIT_VR_LITTLE_ENDIAN if little else EXPLICIT_VR_BIG_ENDIAN
        )
        dataset.file_meta = meta
