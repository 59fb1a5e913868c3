"""Write a rendered series as valid MR Image Storage DICOM files (one per slice, named by instance number)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage

from spinedata.synth.acquisition import SeriesPlan

UID_ROOT = "1.2.826.0.1.3680043.10.1507"
"""Prefix of the frame-of-reference UIDs written here (the study and series UIDs are their numeric ids)."""
STUDY_DATE = "20240101"
DECIMALS = 6
"""Decimal places written for positions, orientations and spacings (DS values hold at most 16 chars)."""


def _ds(values) -> list[str]:
    """Decimal strings that fit DICOM's 16-character DS limit."""
    out = []
    for value in np.atleast_1d(np.asarray(values, float)):
        text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
        out.append("0" if text in ("-0", "") else text)
    return out


def _write_slice(path: Path, plan: SeriesPlan, study_id: str, instance: int, stack_index: int, slice_index: int,
                 pixels: np.ndarray, frame_of_reference: str) -> None:
    stack = plan.stacks[stack_index]
    sop_uid = f"{plan.series_id}.{instance}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_id
    ds.SeriesInstanceUID = plan.series_id
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PatientID = study_id
    ds.PatientName = f"synth^{study_id}"
    ds.PatientPosition = "HFS"
    ds.StudyID = study_id[-8:]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "MR"
    ds.Manufacturer = "spine synth"
    ds.BodyPartExamined = "LSPINE"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SeriesDescription = plan.description
    ds.SeriesNumber = plan.series_number
    ds.InstanceNumber = instance
    ds.AcquisitionNumber = 1
    ds.ScanningSequence = "IR" if plan.contrast == "STIR" else "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = _ds(plan.echo_time)[0]
    ds.RepetitionTime = _ds(plan.repetition_time)[0]
    ds.MagneticFieldStrength = "1.5"
    ds.SliceThickness = _ds(stack.thickness)[0]
    ds.SpacingBetweenSlices = _ds(stack.spacing)[0]
    ds.ImagePositionPatient = _ds(stack.positions[slice_index])
    ds.ImageOrientationPatient = _ds(stack.orientation)
    ds.SliceLocation = _ds(np.dot(stack.positions[slice_index], stack.normal))[0]
    ds.PixelSpacing = _ds(stack.pixel_spacing)
    ds.Rows, ds.Columns = stack.rows, stack.cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = _ds(plan.rescale_slope)[0]
    ds.RescaleIntercept = _ds(plan.rescale_intercept)[0]
    ds.RescaleType = "US"
    high = float(np.percentile(pixels, 99.5)) * plan.rescale_slope + plan.rescale_intercept
    ds.WindowCenter = _ds(high / 2)[0]
    ds.WindowWidth = _ds(max(high, 1.0))[0]
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, plan: SeriesPlan, study_id: str, pixels: list[np.ndarray]) -> int:
    """Write every slice of ``plan`` to ``folder/<instance>.dcm``; returns the number of files."""
    folder.mkdir(parents=True, exist_ok=True)
    frame_of_reference = f"{UID_ROOT}.{study_id}"
    count = 0
    for instance, k, i in plan.slices():
        _write_slice(folder / f"{instance}.dcm", plan, study_id, instance, k, i, pixels[k][i], frame_of_reference)
        count += 1
    return count
