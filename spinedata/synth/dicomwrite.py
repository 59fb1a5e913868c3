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
WINDOW_PERCENTILE = 99.5
DECIMALS = 6
"""Decimal places written for positions, orientations and spacings (DS values hold at most 16 chars)."""


def _ds(values) -> list[str]:
    """Decimal strings that fit DICOM's 16-character DS limit."""
    out = []
    for value in np.atleast_1d(np.asarray(values, float)):
        text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
        out.append("0" if text in ("-0", "") else text)
    return out


def _series_dataset(plan: SeriesPlan, study_id: str, window_high: float) -> Dataset:
    """Everything the slices of one series share (the per-slice elements are set by ``write_series``)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.StudyInstanceUID = study_id
    ds.SeriesInstanceUID = plan.series_id
    ds.FrameOfReferenceUID = f"{UID_ROOT}.{study_id}"
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
    ds.AcquisitionNumber = 1
    ds.ScanningSequence = "IR" if plan.contrast == "STIR" else "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = _ds(plan.echo_time)[0]
    ds.RepetitionTime = _ds(plan.repetition_time)[0]
    ds.MagneticFieldStrength = "1.5"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = _ds(plan.rescale_slope)[0]
    ds.RescaleIntercept = _ds(plan.rescale_intercept)[0]
    ds.RescaleType = "US"
    ds.WindowCenter = _ds(window_high / 2)[0]
    ds.WindowWidth = _ds(max(window_high, 1.0))[0]
    return ds


def write_series(folder: Path, plan: SeriesPlan, study_id: str, pixels: list[np.ndarray],
                 rng: np.random.Generator | None = None) -> int:
    """Write every slice of ``plan`` to ``folder/<instance>.dcm``; returns the number of files.

    ``pixels`` holds the stored values (uint16), one ``(n, rows, cols)`` array per stack of the plan. With
    ``rng`` the files are written in a random order (so that neither file times nor directory order follow
    the slices).
    """
    folder.mkdir(parents=True, exist_ok=True)
    high = max(float(np.percentile(p[:, ::4, ::4], WINDOW_PERCENTILE)) for p in pixels)
    ds = _series_dataset(plan, study_id, high * plan.rescale_slope + plan.rescale_intercept)
    count = 0
    slices = plan.slices()
    order = rng.permutation(len(slices)) if rng is not None else range(len(slices))
    for index in order:
        instance, k, i = slices[index]
        stack = plan.stacks[k]
        sop_uid = f"{plan.series_id}.{instance}"
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = instance
        ds.SliceThickness = _ds(stack.thickness)[0]
        ds.SpacingBetweenSlices = _ds(stack.spacing)[0]
        ds.ImagePositionPatient = _ds(stack.positions[i])
        ds.ImageOrientationPatient = _ds(stack.orientation)
        ds.SliceLocation = _ds(np.dot(stack.positions[i], stack.normal))[0]
        ds.PixelSpacing = _ds(stack.pixel_spacing)
        ds.Rows, ds.Columns = stack.rows, stack.cols
        ds.PixelData = np.ascontiguousarray(pixels[k][i], dtype="<u2").tobytes()
        ds.save_as(folder / f"{instance}.dcm", enforce_file_format=True)
        count += 1
    return count
