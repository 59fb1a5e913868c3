"""Write small synthetic DICOM series with pydicom, for reading and geometry tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"


def write_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    position,
    orientation,
    pixel_spacing,
    instance_number: int | None = 1,
    series_uid: str,
    study_uid: str,
    series_number: int = 1,
    slice_thickness: float | None = None,
    spacing_between_slices: float | None = None,
    photometric: str = "MONOCHROME2",
    rescale: tuple[float, float] | None = None,
    extra: dict | None = None,
) -> Path:
    """One single-frame MR image (uint16 or int16 ``pixels (rows, cols)``) with the geometry given."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "synthetic"
    ds.ProtocolName = "synthetic"
    ds.Modality = "MR"
    ds.PatientID = "0"
    ds.PatientName = "synthetic"
    ds.PatientPosition = "HFS"
    ds.Manufacturer = "spine-tests"
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    if spacing_between_slices is not None:
        ds.SpacingBetweenSlices = spacing_between_slices
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def rotation(angles_deg) -> np.ndarray:
    """A rotation matrix ``(3,3)`` from three Euler angles in degrees (x, then y, then z)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_series(
    folder: Path,
    n_slices: int,
    *,
    rows: int = 24,
    cols: int = 32,
    pixel_spacing=(0.5, 0.8),
    slice_step: float = 3.0,
    angles_deg=(10.0, -20.0, 5.0),
    origin=(-40.0, 25.0, 60.0),
    seed: int = 0,
    instance_order=None,
    study_uid: str | None = None,
    max_value: int = 4000,
    named_by_instance: bool = False,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """A series of ``n_slices`` parallel slices along ``n``; returns ``(volume (n,rows,cols), affine, paths)``
    in ascending ``n . IPP`` order. ``instance_order`` permutes InstanceNumbers (default: reversed); pixels are
    below ``max_value``; files are ``slice_<random>.dcm``, or ``<instance_number>.dcm`` (``named_by_instance``);
    ``kwargs`` go to ``write_slice``."""
    folder.mkdir(parents=True, exist_ok=True)
    rot = rotation(angles_deg)
    r, c = rot[:, 0], rot[:, 1]
    n = np.cross(r, c)
    rng = np.random.default_rng(seed)
    volume = rng.integers(0, max_value, size=(n_slices, rows, cols), dtype=np.uint16)
    order = list(range(n_slices, 0, -1)) if instance_order is None else list(instance_order)
    study_uid, series_uid = study_uid or generate_uid(), generate_uid()
    paths = []
    for k in range(n_slices):
        position = np.asarray(origin) + k * slice_step * n
        name = f"{order[k]}.dcm" if named_by_instance else f"slice_{rng.integers(1 << 30):010d}.dcm"
        path = folder / name
        write_slice(
            path,
            volume[k],
            position=position,
            orientation=np.concatenate([r, c]),
            pixel_spacing=pixel_spacing,
            instance_number=order[k],
            series_uid=series_uid,
            study_uid=study_uid,
            slice_thickness=slice_step,
            **kwargs,
        )
        paths.append(path)
    return volume, expected_affine(r, c, n, slice_step, pixel_spacing, origin), paths


def expected_affine(r, c, n, slice_step, pixel_spacing, origin) -> np.ndarray:
    """The affine of docs/design.md written out by hand (the tests' reference): columns step*n, drow*c, dcol*r, origin."""
    affine = np.eye(4)
    affine[:3, 0] = slice_step * np.asarray(n)
    affine[:3, 1] = pixel_spacing[0] * np.asarray(c)
    affine[:3, 2] = pixel_spacing[1] * np.asarray(r)
    affine[:3, 3] = origin
    return affine


def _item(**elements) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


COPIED_TO_ENHANCED = (
    "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "PatientID",
    "PatientName", "PatientPosition", "Manufacturer", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime",
    "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
)  # fmt: skip


def write_enhanced(
    files: list[Path], path: Path, *, frame_order=None, transfer_syntax: str | None = None,
    shared_geometry: bool = True, echoes=None,
) -> Path:
    """One Enhanced MR multi-frame file holding the slices of a classic single-frame series (``files``):
    frame ``k`` is ``files[frame_order[k]]`` (default: the files' order), its position in the per-frame
    PlanePositionSequence; orientation, pixel spacing and rescale in the shared functional groups (per
    frame when ``shared_geometry`` is False). ``transfer_syntax``: e.g. RLE Lossless (default: explicit VR
    little endian). ``echoes``: the echo (1, 2, ...) of each file, written as a second dimension
    (EffectiveEchoTime in MREchoSequence, DimensionIndexSequence: InStackPositionNumber, then it)."""
    slices = [pydicom.dcmread(f) for f in files]
    first = slices[0]
    order = list(range(len(slices))) if frame_order is None else list(frame_order)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for keyword in COPIED_TO_ENHANCED:
        if keyword in first:
            setattr(ds, keyword, first.data_element(keyword).value)
    ds.SOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = first.Rows, first.Columns

    def geometry(s) -> dict:
        return {
            "PixelMeasuresSequence": Sequence([_item(PixelSpacing=s.PixelSpacing,
                                                     SliceThickness=s.get("SliceThickness", 1))]),
            "PlaneOrientationSequence": Sequence([_item(ImageOrientationPatient=s.ImageOrientationPatient)]),
            "PixelValueTransformationSequence": Sequence([_item(RescaleSlope=s.get("RescaleSlope", 1),
                                                                RescaleIntercept=s.get("RescaleIntercept", 0),
                                                                RescaleType="US")]),
        }  # fmt: skip

    echoes = [1] * len(slices) if echoes is None else list(echoes)
    rank = {}  # InStackPositionNumber: the order along n among the files of one echo
    for echo in set(echoes):
        members = [k for k in range(len(slices)) if echoes[k] == echo]
        rank.update({members[i]: r for r, i in enumerate(spatial_order([slices[k] for k in members]))})
    dimensions = [0x00209057] + ([0x00189082] if len(set(echoes)) > 1 else [])
    ds.DimensionIndexSequence = Sequence([_item(DimensionIndexPointer=pointer) for pointer in dimensions])
    ds.SharedFunctionalGroupsSequence = Sequence([_item(**geometry(first)) if shared_geometry else _item()])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        _item(
            PlanePositionSequence=Sequence([_item(ImagePositionPatient=slices[k].ImagePositionPatient)]),
            FrameContentSequence=Sequence([_item(InStackPositionNumber=rank[k] + 1, StackID="1",
                                                 DimensionIndexValues=[rank[k] + 1, echoes[k]][:len(dimensions)])]),
            MREchoSequence=Sequence([_item(EffectiveEchoTime=10.0 * echoes[k])]),
            **({} if shared_geometry else geometry(slices[k])),
        )
        for k in order
    ])  # fmt: skip
    pixels = np.stack([slices[k].pixel_array for k in order])
    ds.PixelData = pixels.tobytes()
    if transfer_syntax is not None:
        ds.compress(transfer_syntax, pixels)
    ds.save_as(path, enforce_file_format=True)
    return path


def spatial_order(slices: list) -> np.ndarray:
    """Indices of ``slices`` (pydicom data sets or paths) sorted along the normal ``r x c`` of the first."""
    slices = [s if isinstance(s, Dataset) else pydicom.dcmread(s, stop_before_pixels=True) for s in slices]
    iop = np.array(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return np.argsort([float(normal @ np.array(s.ImagePositionPatient, dtype=float)) for s in slices], kind="stable")
