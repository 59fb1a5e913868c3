"""``SliceHeader``, what ``spinedata`` keeps of one file or frame, and ``build_header``: the one place
where header values are checked and converted, whichever reader found them (the fast scan, pydicom, a
multi-frame file's functional groups)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spinedata.dicom.elements import NATIVE_SYNTAXES, UNDEFINED
from spinedata.dicom.limits import ReadLimits, check_declared
from spinedata.dicom.values import Values, number, rescale, text, vector
from spinedata.errors import DicomReadError, GeometryError, MultiFrameFile
from spinedata.geometry import geometry_problem, unit_orientation

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


def native_dtype(values: Values, little: bool, transfer_syntax: str, length: int, n_pixels: int) -> str:
    """The dtype of native single-sample pixels that fill the element, or '' (decode with pydicom)."""
    if transfer_syntax not in NATIVE_SYNTAXES or length == UNDEFINED:
        return ""
    bits = number(values, "BitsAllocated", int, 0)
    samples = number(values, "SamplesPerPixel", int, 1)
    if bits not in (8, 16, 32) or samples != 1:
        return ""
    if length < n_pixels * bits // 8:
        raise DicomReadError(
            f"pixel data holds {length} bytes, fewer than Rows x Columns x {bits // 8} = {n_pixels * bits // 8}"
        )
    signed = number(values, "PixelRepresentation", int, 0) == 1
    return f"{'<' if little else '>'}{'i' if signed else 'u'}{bits // 8}"


def build_header(path: str, values: Values, description: str, transfer_syntax: str, little: bool,
                 pixel_element: Callable[[], tuple[int, int]], size: int, limits: ReadLimits,
                 frame: int = -1, dimension_index: str = "") -> SliceHeader:
    """Check and convert the header values of one file or frame (shared by the scan and pydicom);
    ``pixel_element()`` -> (offset, length) of the PixelData value (of this frame), called last; ``size``:
    the file's size in bytes (what it can hold, checked against what it declares: ``limits.check_declared``)."""
    rows, cols = number(values, "Rows", int), number(values, "Columns", int)
    if not rows or not cols:
        raise DicomReadError("not an image (no Rows/Columns)")
    frames = number(values, "NumberOfFrames", int, 1)
    if frames > 1 and frame < 0:
        raise MultiFrameFile(f"multi-frame file ({frames} frames): read its frames with read_headers")
    image_type = [str(v).strip().upper() for v in (values("ImageType") or [])]
    if "MOSAIC" in image_type:
        raise DicomReadError(
            "Siemens mosaic (several slices tiled in one image) is not supported; convert it with dcm2niix"
        )
    photometric = (text(values, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomReadError(f"PhotometricInterpretation {photometric} is not a grey-scale image")
    position = vector(values, "ImagePositionPatient", 3)
    try:
        orientation = unit_orientation(vector(values, "ImageOrientationPatient", 6))
    except GeometryError as error:
        raise DicomReadError(str(error)) from error
    spacing = vector(values, "PixelSpacing", 2)
    problem = geometry_problem(position, spacing)
    if problem:
        raise DicomReadError(problem)
    slope, intercept = rescale(values)
    offset, length = pixel_element()
    if frame < 0:  # a multi-frame file is checked whole, before its frames (``multiframe.frame_headers``)
        check_declared(values, frames, rows, cols, transfer_syntax, length, size, limits)
    pixel_dtype = "" if offset < 0 else native_dtype(values, little, transfer_syntax, length, rows * cols)
    return SliceHeader(
        path=path,
        study_uid=text(values, "StudyInstanceUID"),
        series_uid=text(values, "SeriesInstanceUID"),
        sop_uid=text(values, "SOPInstanceUID"),
        series_description=description,
        instance_number=number(values, "InstanceNumber", int),
        position=position,
        orientation=orientation,
        pixel_spacing=(spacing[0], spacing[1]),
        rows=rows,
        cols=cols,
        slice_thickness=number(values, "SliceThickness", float),
        spacing_between_slices=number(values, "SpacingBetweenSlices", float),
        echo_number=number(values, "EchoNumbers", int),
        acquisition_number=number(values, "AcquisitionNumber", int),
        temporal_position=number(values, "TemporalPositionIdentifier", int),
        rescale_slope=slope,
        rescale_intercept=intercept,
        transfer_syntax=transfer_syntax,
        photometric=photometric,
        bits_stored=number(values, "BitsStored", int, 0),
        pixel_offset=offset if pixel_dtype else -1,
        pixel_dtype=pixel_dtype,
        frame=frame,
        dimension_index=dimension_index,
        image_type="\\".join(image_type),
        bits_allocated=number(values, "BitsAllocated", int, 0),
        pixel_representation=number(values, "PixelRepresentation", int, 0),
        samples_per_pixel=number(values, "SamplesPerPixel", int, 1),
    )

