"""Small competition-layout datasets written with pydicom, for store and ingest tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from spinedata.constants import TARGETS
from tests.helpers.dicom_writer import write_series

SAGITTAL = (0.0, 90.0, 0.0)
"""Euler angles (deg) turning the identity IOP into a sagittal one (normal along x)."""


@dataclass
class SeriesTruth:
    """What was written for one series: pixels in stack order (ascending n . IPP), affine, instances."""

    volume: np.ndarray
    affine: np.ndarray
    instance_numbers: np.ndarray
    paths: list[Path]


def write_competition_series(
    folder: Path,
    *,
    study_uid: str,
    n_slices: int = 6,
    rows: int = 20,
    cols: int = 24,
    pixel_spacing=(0.6, 0.9),
    slice_step: float = 4.0,
    angles_deg=SAGITTAL,
    origin=(10.0, -20.0, 30.0),
    description: str = "synthetic",
    seed: int = 0,
    rescale: tuple[float, float] | None = None,
) -> SeriesTruth:
    """One series as ``<folder>/<instance_number>.dcm``, instance numbers descending along ``n``."""
    volume, affine, paths = write_series(
        folder, n_slices, rows=rows, cols=cols, pixel_spacing=pixel_spacing, slice_step=slice_step,
        angles_deg=angles_deg, origin=origin, seed=seed, study_uid=study_uid, max_value=3000,
        named_by_instance=True, extra={"SeriesDescription": description}, rescale=rescale)
    return SeriesTruth(volume, affine, np.arange(n_slices, 0, -1), paths)


def write_competition_dataset(
    data_dir: Path, study_ids=("1001", "1002"), split: str = "train"
) -> dict[tuple[str, str], SeriesTruth]:
    """Studies with a Sagittal T2/STIR (series ``<study>1``) and an Axial T2 (``<study>2``), the series
    descriptions CSV, and for train a label CSV (one spinal point per study) and train.csv."""
    truth = {}
    rows = ["study_id,series_id,series_description"]
    for i, study_id in enumerate(study_ids):
        uid = generate_uid()
        sag, ax = f"{study_id}1", f"{study_id}2"
        truth[(study_id, sag)] = write_competition_series(
            data_dir / f"{split}_images" / study_id / sag, study_uid=uid, seed=i, description="SAG T2"
        )
        truth[(study_id, ax)] = write_competition_series(
            data_dir / f"{split}_images" / study_id / ax, study_uid=uid, seed=100 + i, angles_deg=(0, 0, 0),
            n_slices=4, rows=16, cols=16, pixel_spacing=(0.5, 0.5), description="AX T2",
        )  # fmt: skip
        rows += [f"{study_id},{sag},Sagittal T2/STIR", f"{study_id},{ax},Axial T2"]
    (data_dir / f"{split}_series_descriptions.csv").write_text("\n".join(rows) + "\n")
    if split == "train":
        labels = ["study_id,series_id,instance_number,condition,level,x,y"]
        targets = [",".join(("study_id", *TARGETS))]
        for study_id in study_ids:
            labels.append(f"{study_id},{study_id}1,2,Spinal Canal Stenosis,L1/L2,7.5,11.25")
            # spinal L1/L2 Moderate, the last target missing, the rest Normal/Mild
            targets.append(",".join((study_id, "Moderate", *["Normal/Mild"] * 23, "")))
        (data_dir / "train_label_coordinates.csv").write_text("\n".join(labels) + "\n")
        (data_dir / "train.csv").write_text("\n".join(targets) + "\n")
    return truth
