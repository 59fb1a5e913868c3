"""DICOM element encoding: tags, VRs, transfer syntaxes, the element header and raw element values.

Everything here is defined once and shared by the fast header scan (``fastscan``), the pydicom path
(``dataset``) and the pixel readers. No pydicom import: the scan must not pay for it.
"""

from __future__ import annotations

import functools
import struct

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = {IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, ""}
"""Transfer syntaxes whose pixel values lie in the file as they are ('' = bare dataset)."""

PIXEL_DATA = 0x7FE00010
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
"""VRs whose explicit element header is 12 bytes (2 reserved bytes, a 4-byte length)."""

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
against pydicom's in ``tests/spinedata/test_dicom_fastscan.py``; written out so that the scan needs no pydicom import)."""
HEADER_KEYWORDS = list(HEADER_ELEMENTS)
HEADER_TAGS = {keyword: tag for keyword, (tag, _) in HEADER_ELEMENTS.items()}
SCAN_TAGS = dict(HEADER_ELEMENTS.values())
"""The header elements and their VRs (tag -> VR), for ``fastscan.scan``."""

_IMPLICIT = {True: struct.Struct("<HHI"), False: struct.Struct(">HHI")}
_EXPLICIT = {True: struct.Struct("<HH2sH"), False: struct.Struct(">HH2sH")}
_LENGTH = {True: struct.Struct("<I"), False: struct.Struct(">I")}


class ShortBuffer(Exception):
    """The buffer ends inside an element header."""


def element_head(data: bytes, position: int, implicit: bool, little: bool = True) -> tuple[int, int, int, bytes]:
    """``(tag, value offset, value length, VR bytes or b'')`` of the element whose header starts at
    ``position`` of ``data`` (the one parser of a data element header). The VR is not checked (``is_vr``):
    one that is not in ``LONG_VRS`` is read as a short-length VR. ``ShortBuffer`` when ``data`` ends inside
    the header."""
    end = len(data)
    if position + 8 > end:
        raise ShortBuffer
    if implicit:
        group, element, length = _IMPLICIT[little].unpack_from(data, position)
        return group << 16 | element, position + 8, length, b""
    group, element, vr, length = _EXPLICIT[little].unpack_from(data, position)
    if vr in LONG_VRS:
        if position + 12 > end:
            raise ShortBuffer
        return group << 16 | element, position + 12, _LENGTH[little].unpack_from(data, position + 8)[0], vr
    return group << 16 | element, position + 8, length, vr


def is_vr(vr: bytes) -> bool:
    """Whether two bytes look like a VR (two upper-case letters)."""
    return 65 <= vr[0] <= 90 and 65 <= vr[1] <= 90


TEXT_VRS = {"DS", "IS", "UI", "CS"}
"""Value representations read straight from their bytes (pydicom's conversion is a third of the header
time); anything else goes through pydicom."""


def raw_values(vr: str, raw: bytes, little: bool = True) -> list | None:
    """Values of a DS/IS/UI/CS (text) or US element from its raw bytes; ``NotImplemented`` for other VRs."""
    if vr in TEXT_VRS:
        parts = [part.strip(" \x00") for part in raw.decode("latin-1").split("\\")]
        return None if all(part == "" for part in parts) else parts
    if vr == "US" and len(raw) % 2 == 0:
        return list(struct.unpack(f"{'<' if little else '>'}{len(raw) // 2}H", raw)) or None
    return NotImplemented


@functools.lru_cache(maxsize=4096)
def scanned_values(vr: str, raw: bytes) -> tuple | None:
    """``raw_values`` of a scanned (little-endian) element as a tuple, remembered: the files of a series
    repeat most of their values byte for byte (orientation, spacing, matrix, UIDs), so most lookups skip
    the decoding (a pure function of its arguments: the cache never changes a result)."""
    found = raw_values(vr, raw)
    return found if found is None or found is NotImplemented else tuple(found)
