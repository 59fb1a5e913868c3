"""Multi-frame files (enhanced MR and other files with per-frame functional groups): one header per frame.

Each frame's position, orientation, pixel spacing and rescale come from its functional groups (per-frame
first, then shared), its ``instance_number`` is its frame number (1-based) and ``frame`` its index. A
multi-frame file without per-frame positions is rejected. Read with pydicom, functional groups included.
"""

from __future__ import annotations

from spinedata.dicom.dataset import corrupt_file_errors, dataset_values, little_endian, opened, pixel_element
from spinedata.dicom.elements import UNDEFINED
from spinedata.dicom.limits import ReadLimits, check_declared
from spinedata.dicom.sliceheader import SliceHeader, build_header
from spinedata.dicom.values import number
from spinedata.errors import DicomReadError

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


def read_frame_headers(path: str, limits: ReadLimits) -> list[SliceHeader]:
    """One header per frame of a multi-frame file (read with pydicom, functional groups included)."""
    try:
        return _frame_headers(path, limits)
    except corrupt_file_errors() as error:  # a damaged value deep in the functional groups
        raise DicomReadError(f"corrupt multi-frame header ({type(error).__name__}: {error})") from error


def _frame_headers(path: str, limits: ReadLimits) -> list[SliceHeader]:
    from pydicom.multival import MultiValue

    with opened(path, specific_tags=None) as (dataset, fp, size, syntax):
        little = little_endian(dataset)
        offset, length = pixel_element(fp, dataset, size, syntax)
    top = dataset_values(dataset)
    frames = number(top, "NumberOfFrames", int, 1)
    shared = list(dataset.get("SharedFunctionalGroupsSequence") or [None])[:1]
    per_frame = list(dataset.get("PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) != frames:
        raise DicomReadError(
            f"multi-frame file with {frames} frames but {len(per_frame)} items of PerFrameFunctionalGroupsSequence"
        )
    rows, cols = number(top, "Rows", int, 0), number(top, "Columns", int, 0)
    bits = number(top, "BitsAllocated", int, 0)
    frame_bytes = rows * cols * bits // 8
    if length != UNDEFINED and offset >= 0 and bits % 8 == 0 and length < frames * frame_bytes:
        raise DicomReadError(
            f"truncated pixel data: {length} bytes hold {length // max(frame_bytes, 1)} of {frames} frames"
        )
    check_declared(top, frames, rows, cols, syntax, length, size, limits)  # before the loop
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
        headers.append(build_header(path, values, description, syntax, little,
                                    lambda element=element: element, size, limits, frame=frame,
                                    dimension_index=dimensions[frame]))  # fmt: skip
    return headers

