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

_IMPLICIT_LE, _IMPLICIT_BE = struct.Struct("<HHI").unpack_from, struct.Struct(">HHI").unpack_from
_EXPLICIT_LE, _EXPLICIT_BE = struct.Struct("<HH2sH").unpack_from, struct.Struct(">HH2sH").unpack_from
_U32_LE, _U32_BE = struct.Struct("<I").unpack_from, struct.Struct(">I").unpack_from
_NOTHING: dict[int, str] = {}
BEYOND_TAGS = 1 << 32
"""A ``stop`` of ``walk`` above every tag: walk to the next item or delimiter."""


class ShortBuffer(Exception):
    """The buffer ends inside an element (read more of the file, or give up at its end). ``position``: the
    top-level element to walk on from with more data (everything before it is walked and recorded)."""

    def __init__(self, position: int):
        super().__init__(position)
        self.position = position


class Unsure(Exception):
    """The bytes are not encoded as the walk expects (not a VR, a broken sequence, an unexpected VR for a
    wanted tag): leave the file to pydicom."""


def walk(data: bytes, position: int, implicit: bool, wanted: dict[int, str] = _NOTHING,
         values: dict[int, tuple[str, bytes]] | None = None, stop: int = 0,
         little: bool = True) -> tuple[int, int, int, int, bytes]:
    """Walk the data elements of ``data`` from ``position`` (the one parser of element headers): the raw
    value of each ``wanted`` tag (tag -> VR) goes into ``values`` (tag -> (VR, bytes)), and a sequence of
    undefined length is skipped whole, up to the first element whose tag is ``stop`` or more, or in group
    FFFE (an item or a delimiter). Returns that element's header: ``(its position, tag, value offset, value
    length, VR bytes or b'')``; ``stop=0`` gives the header of the element at ``position``, its VR unchecked.

    ``ShortBuffer`` when ``data`` ends first (every element header is read with 12 bytes at hand; the walk
    goes on from its ``position`` with more data); ``Unsure`` for what is not encoded as expected. One loop, no call per element: the fast header scan
    walks about a hundred elements per file."""
    end = len(data)
    if implicit:
        head = _IMPLICIT_LE if little else _IMPLICIT_BE
    else:
        head = _EXPLICIT_LE if little else _EXPLICIT_BE
    u32 = _U32_LE if little else _U32_BE
    while True:
        if position + 12 > end:
            raise ShortBuffer(position)
        if implicit:
            group, element, length = head(data, position)
            vr, offset = b"", position + 8
        else:
            group, element, vr, length = head(data, position)
            if vr in LONG_VRS:
                length, offset = u32(data, position + 8)[0], position + 12
            else:
                offset = position + 8
        tag = group << 16 | element
        if tag >= stop or group == 0xFFFE:
            return position, tag, offset, length, vr
        if vr and not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise Unsure  # not a VR: the data set is not encoded as its transfer syntax says
        if length == UNDEFINED:
            if vr not in (b"", b"SQ", b"UN"):
                raise Unsure
            try:
                position = _skip_undefined_sequence(data, offset, implicit or vr == b"UN")
            except ShortBuffer:
                raise ShortBuffer(position) from None  # walk the whole sequence again with more data
            continue
        following = offset + length
        expected = wanted.get(tag)
        if expected is not None:
            if following > end:
                raise ShortBuffer(position)
            if vr and vr.decode("ascii") != expected:
                raise Unsure
            values[tag] = (expected, data[offset:following])
        position = following


def _skip_undefined_sequence(data: bytes, position: int, implicit: bool) -> int:
    """Position after a sequence of undefined length (little endian) whose items start at ``position``."""
    while True:
        if position + 8 > len(data):
            raise ShortBuffer(position)
        group, element, length = _IMPLICIT_LE(data, position)
        tag = group << 16 | element
        position += 8
        if tag == SEQUENCE_END:
            return position
        if tag != ITEM:
            raise Unsure
        if length != UNDEFINED:
            position += length
            continue
        start, tag, _, _, _ = walk(data, position, implicit, stop=BEYOND_TAGS)  # the item's elements
        if tag != ITEM_END:
            raise Unsure
        position = start + 8


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
