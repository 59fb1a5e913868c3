"""Crops of fixed millimetres around a point of a sagittal stack, for the point refiner (``fine_keypoints``).

A crop is ``crop_px`` pixels of ``step_mm`` on each side, centred on a (fractional slice, row, col) of the
stack, optionally rotated in-plane; it is read from the stack's own pixels (cubic in-plane, linear between the
two nearest slices), so matrix, field of view and pixel spacing never change what a crop shows. The target of a
training crop is the labelled point's offset from the crop's centre in mm along the crop's rows and columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import map_coordinates

from spinedata.constants import ROLE_SAG_T2
from spinedata.crops import crop_grid
from spinedata.intensity import percentile_scaled
from spinemodels.data.sampling import unpack_index
from spinemodels.data.spinal import jitter_intensity, spinal_labels
from spinemodels.data.stackio import LazyStoreDataset, StackCache

SPLINE_MARGIN = 4
"""Stack pixels read beyond a crop's footprint, so that the cubic spline's border handling stays outside it."""


def crop_around(volume: np.ndarray, position: float, point: np.ndarray, pixel_spacing: tuple[float, float],
                crop_px: int, step_mm: float, theta: float = 0.0) -> np.ndarray:
    """(crop_px, crop_px) float32 in 0-1 (the crop's 1st-99th percentile): ``volume`` (n, rows, cols) at the
    fractional slice ``position`` (clipped to the stack), centred on ``point`` (row, col), on the grid of
    ``spinedata.crops.crop_grid`` turned by ``theta`` radians. Beyond the image the nearest edge pixel is
    repeated."""
    n, n_rows, n_cols = volume.shape
    position = float(np.clip(position, 0, n - 1))
    d_rows, d_cols = crop_grid(crop_px * step_mm, crop_px, pixel_spacing, angle_deg=math.degrees(theta))
    rows, cols = point[0] + d_rows, point[1] + d_cols
    r0 = int(np.clip(np.floor(rows.min()) - SPLINE_MARGIN, 0, n_rows - 1))
    r1 = int(np.clip(np.ceil(rows.max()) + SPLINE_MARGIN + 1, r0 + 1, n_rows))
    c0 = int(np.clip(np.floor(cols.min()) - SPLINE_MARGIN, 0, n_cols - 1))
    c1 = int(np.clip(np.ceil(cols.max()) + SPLINE_MARGIN + 1, c0 + 1, n_cols))
    first = int(np.floor(position))
    weight = position - first
    image = np.zeros((crop_px, crop_px), dtype=np.float64)
    for s, w in ((first, 1.0 - weight), (min(first + 1, n - 1), weight)):
        if w > 1e-6:
            window = np.asarray(volume[s, r0:r1, c0:c1], dtype=np.float32)
            image += w * map_coordinates(window, [rows - r0, cols - c0], order=3, mode="nearest")
    return percentile_scaled(image[None], clip=True)[0].astype(np.float32)


def offset_in_crop(target: np.ndarray, centre: np.ndarray, pixel_spacing: tuple[float, float],
                   theta: float = 0.0) -> np.ndarray:
    """(2,) mm of ``target`` (row, col) from ``centre`` (row, col), along the rows and columns of a crop turned
    by ``theta`` (``crop_around``)."""
    d_row = (target[0] - centre[0]) * pixel_spacing[0]
    d_col = (target[1] - centre[1]) * pixel_spacing[1]
    c, s = math.cos(theta), math.sin(theta)  # the inverse of crop_grid's rotation
    return np.array([c * d_row - s * d_col, s * d_row + c * d_col], dtype=np.float32)


@dataclass(frozen=True)
class LabelledPoint:
    """A spinal canal label on a Sagittal T2/STIR stack: its slice and (row, col) in the stack's pixels."""

    study_id: str
    series_id: str
    stack_index: int
    level: str
    slice: int
    row: float
    col: float
    pixel_spacing: tuple[float, float]


def labelled_points(dataset: Any, study_ids: list[str]) -> list[LabelledPoint]:
    """The spinal canal labels of the given studies that lie on a Sagittal T2/STIR stack."""
    labels = spinal_labels(dataset.labels)
    labels = labels[labels["study_id"].isin({str(s) for s in study_ids})]
    points = []
    for row in labels.itertuples():
        series = dataset.study(row.study_id).series[row.series_id]
        if series.role != ROLE_SAG_T2 or not np.isfinite([row.x, row.y]).all():
            continue
        spacing = tuple(float(v) for v in series.stacks[int(row.stack)].geometry.pixel_spacing)
        points.append(LabelledPoint(row.study_id, row.series_id, int(row.stack), str(row.level), int(row.slice),
                                    float(row.y), float(row.x), spacing))
    return points


class PointCropDataset(LazyStoreDataset):
    """Sample: ``image`` (1, S, S) a crop around a displaced label, ``target`` (2,) the label's offset (mm) from
    the crop's centre, ``start_mm`` the displacement, ``study_id``, ``level``.

    Each label gives ``crops_per_point`` samples. The centre is moved by up to ``jitter_mm`` along the rows and
    the columns and by up to ``slice_jitter`` slices (training and validation alike: the refiner starts from
    another model's point); training also turns the crop by up to ``augment_degrees``, flips it front to back
    and changes its intensities (``jitter_intensity`` at ``augment_intensity``)."""

    def __init__(self, source: Any, points: list[LabelledPoint], crop_px: int, step_mm: float, train: bool,
                 crops_per_point: int = 1, jitter_mm: float = 4.0, slice_jitter: float = 0.6,
                 augment_degrees: float = 12.0, augment_intensity: float = 2.0, cache_mb: int = 512):
        super().__init__(source)
        self.points, self.crop_px, self.step_mm, self.train = points, crop_px, step_mm, train
        self.crops_per_point, self.jitter_mm, self.slice_jitter = crops_per_point, jitter_mm, slice_jitter
        self.augment_degrees, self.augment_intensity = augment_degrees, augment_intensity
        self.cache = StackCache(cache_mb * 2**20)

    def __len__(self) -> int:
        return len(self.points) * self.crops_per_point

    def __getitem__(self, index) -> dict:
        index, rng = unpack_index(index)
        point = self.points[index % len(self.points)]
        stack = self.dataset.study(point.study_id).series[point.series_id].stacks[point.stack_index]
        volume = self.cache.get((point.study_id, point.series_id, point.stack_index), stack, None)
        truth = np.array([point.row, point.col])
        shift_mm = rng.uniform(-self.jitter_mm, self.jitter_mm, 2)
        centre = truth - shift_mm / np.asarray(point.pixel_spacing)
        position = point.slice + rng.uniform(-self.slice_jitter, self.slice_jitter)
        theta = math.radians(rng.uniform(-self.augment_degrees, self.augment_degrees)) if self.train else 0.0
        image = crop_around(volume, position, centre, point.pixel_spacing, self.crop_px, self.step_mm, theta)
        target = offset_in_crop(truth, centre, point.pixel_spacing, theta)
        if self.train:
            image = jitter_intensity(image[None], rng, self.augment_intensity)[0]
            if rng.random() < 0.5:  # front to back (columns); inference averages both ways
                image, target = image[:, ::-1].copy(), target * np.array([1.0, -1.0], dtype=np.float32)
        return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
                "target": torch.from_numpy(target), "start_mm": float(np.hypot(*shift_mm)),
                "study_id": point.study_id, "level": point.level}
