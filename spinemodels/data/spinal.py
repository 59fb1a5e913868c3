"""Torch datasets over the Sagittal T2/STIR stack of each study: slice finding and keypoints.

A sample is one study. Its stack is read once (normalised, resampled to a grid of fixed millimetres per
pixel, ``PhysicalGrid``, cached per worker); crops, slice windows and augmentation are made on the fly. Targets come from ``dataset.labels`` (spinal canal points,
which carry their stack and slice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from spinedata.constants import LEVELS, ROLE_SAG_T1, ROLE_SAG_T2
from spinemodels.data.sampling import unpack_index
from spinemodels.data.stackio import LazyStoreDataset, PhysicalGrid, StackCache, spinal_stack_candidates

SPINAL = "Spinal Canal Stenosis"
SPINAL_ROLES = (ROLE_SAG_T2, ROLE_SAG_T1)
"""Where spinal points are looked for: Sagittal T2/STIR, else (with a warning) Sagittal T1."""
MISSING = -1


@dataclass(frozen=True)
class SpinalSample:
    """One study's spinal stack and its labels (row, col in the stack's pixel grid; slice -1 = missing)."""

    study_id: str
    series_id: str
    stack_index: int
    shape: tuple[int, int, int]
    slices: tuple[int, ...]  # (5,) labelled slice per level
    points: tuple[tuple[float, float], ...]  # (5, 2) labelled (row, col) per level; NaN when missing
    pixel_spacing: tuple[float, float] = (1.0, 1.0)  # (drow, dcol) mm of the stack

    def grid(self, size: int, fov_mm: float) -> PhysicalGrid:
        """The stack's physical grid of ``size`` pixels over ``fov_mm``."""
        return PhysicalGrid(self.shape[1], self.shape[2], self.pixel_spacing, size, fov_mm)


def spinal_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Spinal canal points that could be placed in a stack (stack >= 0), ids as strings."""
    if labels is None or len(labels) == 0:
        return pd.DataFrame(columns=["study_id", "series_id", "level", "stack", "slice", "x", "y"])
    rows = labels[(labels["condition"] == SPINAL) & (labels["stack"] >= 0)]
    return rows.assign(study_id=rows["study_id"].astype(str), series_id=rows["series_id"].astype(str))


def make_samples(dataset: Any, study_ids: list[str], need_labels: bool) -> list[SpinalSample]:
    """Pick the spinal stack of each study: the one holding most spinal labels, else the largest.

    ``need_labels``: drop studies without any spinal label (training); otherwise keep every study that
    has a sagittal stack.
    """
    labels = spinal_labels(dataset.labels)
    by_study = dict(tuple(labels.groupby("study_id"))) if len(labels) else {}
    samples = []
    for study_id in study_ids:
        study_id = str(study_id)
        rows = by_study.get(study_id)
        if rows is not None and len(rows):
            counts = rows.groupby(["series_id", "stack"]).size().sort_values(ascending=False, kind="stable")
            series_id, k = counts.index[0]
            k = int(k)
            stack = dataset.study(study_id).series[series_id].stacks[k]
            rows = rows[(rows["series_id"] == series_id) & (rows["stack"] == k)]
        elif need_labels:
            continue
        else:
            candidates = spinal_stack_candidates(dataset.study(study_id), SPINAL_ROLES)
            if not candidates:
                continue
            series_id, k, stack = candidates[0]
            rows = None
        slices, points = [MISSING] * len(LEVELS), [(math.nan, math.nan)] * len(LEVELS)
        if rows is not None:
            for row in rows.itertuples():
                if row.level in LEVELS:
                    i = LEVELS.index(row.level)
                    slices[i], points[i] = int(row.slice), (float(row.y), float(row.x))
        samples.append(SpinalSample(study_id, str(series_id), k, tuple(int(v) for v in stack.shape),
                                    tuple(slices), tuple(points),
                                    tuple(float(v) for v in stack.geometry.pixel_spacing)))
    return samples


def grid_and_augment(data: Any) -> dict[str, float]:
    """The options both stage-1 datasets take from their task's data config as they are: the grid's
    ``fov_mm`` and the shared augmentation (zoom, shift, rotation, intensity)."""
    names = ("fov_mm", "augment_scale", "augment_shift", "augment_degrees", "augment_intensity")
    return {name: getattr(data, name) for name in names}


class StoreDataset(LazyStoreDataset):
    """Base: holds a store path (opened lazily in each worker) or an opened dataset, and a stack cache."""

    def __init__(self, source: Any, cache_mb: int):
        super().__init__(source)
        self.cache = StackCache(cache_mb * 2**20)

    def volume(self, sample: SpinalSample, grid: PhysicalGrid) -> np.ndarray:
        """(n, size, size) float32, normalised and resampled to ``grid``."""
        stack = self.dataset.study(sample.study_id).series[sample.series_id].stacks[sample.stack_index]
        return self.cache.get((sample.study_id, sample.series_id, sample.stack_index), stack, grid)


def jitter_intensity(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Random contrast (gamma), gain, brightness, smoothing and noise on a 0-1 image; ``strength`` scales
    the ranges (1: gamma x/÷ e^0.3, gain 0.85-1.15, offset +-0.05, noise sd up to 0.03)."""
    gamma = math.exp(rng.uniform(-0.3, 0.3) * strength)
    gain = 1.0 + rng.uniform(-0.15, 0.15) * strength
    image = np.clip(image, 0, 1) ** gamma * gain + rng.uniform(-0.05, 0.05) * strength
    if strength > 1 and image.ndim == 3 and rng.random() < 0.3:  # a smoother acquisition
        from scipy.ndimage import gaussian_filter

        blur = rng.uniform(0.3, 1.0)
        image = gaussian_filter(image, sigma=(0.0, blur, blur))
    return (image + rng.normal(0, rng.uniform(0, 0.03 * strength), image.shape)).astype(np.float32)


def crop_slices(n: int, target: np.ndarray, rng: np.random.Generator, most: int) -> tuple[int, int]:
    """A random run of slices ``[first, last)`` of a stack of ``n``: up to ``most`` dropped at each end,
    never a labelled slice (``target``: slice per level, -1 missing), never fewer than half the stack."""
    labelled = target[target >= 0]
    low_limit = int(labelled.min()) if len(labelled) else n // 2
    high_limit = int(labelled.max()) + 1 if len(labelled) else n // 2 + 1
    first = int(rng.integers(0, min(most, low_limit, n // 4) + 1))
    last = n - int(rng.integers(0, min(most, n - high_limit, n // 4) + 1))
    return first, last


class SliceFinderDataset(StoreDataset):
    """Sample: ``image`` (n_slices, S, S) zero-padded, ``mask`` (n_slices,) real slices, ``target`` (5,)
    slice index per level (-1 missing), plus ``study_id``. Slices are on the stack's ``PhysicalGrid``
    (``image_size`` pixels over ``fov_mm``).

    Training augments across acquisitions: a random run of slices (``augment_crop`` dropped at most at
    each end, never a labelled one), a random place inside the padding, one random zoom/shift/rotation
    for all slices (``augment_scale``, ``augment_shift``, ``augment_degrees``) and stronger intensity
    changes (``augment_intensity`` times the keypoint model's)."""

    def __init__(self, source: Any, samples: list[SpinalSample], image_size: int, n_slices: int,
                 train: bool, cache_mb: int = 512, fov_mm: float = 320.0, augment_scale: float = 0.15,
                 augment_shift: float = 0.05, augment_degrees: float = 8.0, augment_crop: int = 3,
                 augment_intensity: float = 1.5):
        super().__init__(source, cache_mb)
        self.samples, self.size, self.n_slices, self.train = samples, image_size, n_slices, train
        self.fov_mm = fov_mm
        self.augment = (augment_scale, augment_shift, augment_degrees)
        self.augment_crop, self.augment_intensity = augment_crop, augment_intensity

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index) -> dict:
        index, rng = unpack_index(index)
        sample = self.samples[index]
        volume = self.volume(sample, sample.grid(self.size, self.fov_mm))
        target = np.asarray(sample.slices, dtype=np.int64)
        start, stop = 0, volume.shape[0]
        if self.train and self.augment_crop > 0:
            start, stop = crop_slices(volume.shape[0], target, rng, self.augment_crop)
        volume = volume[start:stop]
        target = np.where(target >= 0, target - start, MISSING)
        n = volume.shape[0]
        first = 0  # stack slice shown at position 0
        if n > self.n_slices:  # keep a window holding the labels (centred on them)
            labelled = target[target >= 0]
            centre = int(np.median(labelled)) if len(labelled) else n // 2
            first = int(np.clip(centre - self.n_slices // 2, 0, n - self.n_slices))
        shown = volume[first: first + self.n_slices]
        offset = int(rng.integers(0, self.n_slices - len(shown) + 1)) if self.train else 0
        image = np.zeros((self.n_slices, self.size, self.size), dtype=np.float32)
        if self.train:
            warped, _ = warp(torch.from_numpy(np.ascontiguousarray(shown)), np.zeros((0, 2)),
                             random_affine(rng, *self.augment))
            shown = jitter_intensity(warped.numpy(), rng, self.augment_intensity)
        image[offset: offset + len(shown)] = shown
        mask = np.zeros(self.n_slices, dtype=bool)
        mask[offset: offset + len(shown)] = True
        moved = target - first + offset
        target = np.where((target >= 0) & (moved >= offset) & (moved < offset + len(shown)), moved, MISSING)
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask),
                "target": torch.from_numpy(target), "first": start + first - offset, "study_id": sample.study_id}


def random_affine(rng: np.random.Generator, scale: float, shift: float, degrees: float) -> np.ndarray:
    """(2, 3) affine in normalised (x=col, y=row) coordinates: output point -> input point."""
    s = math.exp(rng.uniform(-scale, scale))
    a = math.radians(rng.uniform(-degrees, degrees))
    t = rng.uniform(-shift, shift, 2) * 2
    return np.array([[math.cos(a) / s, -math.sin(a) / s, t[0]], [math.sin(a) / s, math.cos(a) / s, t[1]]])


def warp(image: torch.Tensor, points: np.ndarray, theta: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Resample (C, S, S) with ``theta`` (output -> input, normalised) and move (L, 2) (row, col) points."""
    size = image.shape[-1]
    grid = F.affine_grid(torch.as_tensor(theta, dtype=torch.float32)[None], [1, *image.shape],
                         align_corners=False)
    warped = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    if len(points) == 0:
        return warped, np.asarray(points, dtype=np.float64).reshape(0, 2)
    xy_in = (points[:, ::-1] * 2 + 1) / size - 1  # (col, row) -> normalised
    full = np.vstack([theta, [0, 0, 1]])
    xy_out = (np.linalg.inv(full) @ np.c_[xy_in, np.ones(len(xy_in))].T).T[:, :2]
    moved = ((xy_out + 1) * size - 1) / 2
    return warped, moved[:, ::-1].copy()


class KeypointDataset(StoreDataset):
    """Sample: ``image`` (channels, S, S): ``channels`` slices centred on the study's spinal slice (zeros
    beyond the stack) on the stack's ``PhysicalGrid``; ``points`` (5, 2) (row, col) on that grid; ``valid``
    (5,); ``study_id``; ``centre`` (the centre slice); the grid's ``rows``, ``cols``, ``drow``, ``dcol``.
    Training jitters the centre by +-1 slice and applies a random affine and intensity changes.

    ``centres`` (optional, study_id -> slice) replaces the labelled centre, e.g. by slice-finder output.
    """

    def __init__(self, source: Any, samples: list[SpinalSample], image_size: int, channels: int, train: bool,
                 cache_mb: int = 512, centres: dict[str, int] | None = None, augment_scale: float = 0.1,
                 augment_shift: float = 0.08, augment_degrees: float = 10.0, fov_mm: float = 320.0,
                 augment_intensity: float = 1.0):
        super().__init__(source, cache_mb)
        self.samples, self.size, self.channels, self.train = samples, image_size, channels, train
        self.fov_mm, self.augment_intensity = fov_mm, augment_intensity
        self.centres = centres or {}
        self.augment = (augment_scale, augment_shift, augment_degrees)

    def __len__(self) -> int:
        return len(self.samples)

    def centre_of(self, sample: SpinalSample) -> int:
        if sample.study_id in self.centres:
            return int(self.centres[sample.study_id])
        labelled = [s for s in sample.slices if s >= 0]
        return int(round(float(np.median(labelled)))) if labelled else sample.shape[0] // 2

    def __getitem__(self, index) -> dict:
        index, rng = unpack_index(index)
        sample = self.samples[index]
        grid = sample.grid(self.size, self.fov_mm)
        volume = self.volume(sample, grid)
        centre = self.centre_of(sample)
        if self.train and rng.random() < 0.5:
            centre += int(rng.choice([-1, 1]))
        image = slice_window(volume, centre, self.channels)
        points = grid.to_grid(np.asarray(sample.points, dtype=np.float64))
        valid = np.isfinite(points).all(axis=1)
        points = np.nan_to_num(points, nan=-1.0)
        tensor = torch.from_numpy(image)
        if self.train:
            tensor, points = warp(tensor, points, random_affine(rng, *self.augment))
            tensor = torch.from_numpy(jitter_intensity(tensor.numpy(), rng, self.augment_intensity))
            inside = ((points >= 0) & (points <= self.size - 1)).all(axis=1)
            valid &= inside
        return {"image": tensor, "points": torch.from_numpy(points.astype(np.float32)),
                "valid": torch.from_numpy(valid), "centre": centre, "study_id": sample.study_id,
                "rows": sample.shape[1], "cols": sample.shape[2], "drow": sample.pixel_spacing[0],
                "dcol": sample.pixel_spacing[1]}


def slice_window(volume: np.ndarray, centre: int, channels: int) -> np.ndarray:
    """(channels, S, S): slices ``centre - channels//2 ...`` of ``volume``, zeros outside the stack."""
    n = volume.shape[0]
    out = np.zeros((channels, *volume.shape[1:]), dtype=np.float32)
    first = centre - channels // 2
    for c in range(channels):
        s = first + c
        if 0 <= s < n:
            out[c] = volume[s]
    return out
