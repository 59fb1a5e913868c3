"""Torch datasets of stage 2: mm-normalised crops around each level's points, and their severities.

Two views of the same crops:

- ``LevelGradeDataset`` (training the graders): one sample is one level and side, ``(N, S, S)`` with its
  level and side ids, so that every labelled level is one sample and batches hold 32-64 of them;
- ``GradeDataset`` (inference, the master model): one sample is one study's grid of one condition group,
  spinal ``(5, 1, N, S, S)`` on Sagittal T2/STIR, foraminal ``(5, 2, N, S, S)`` on Sagittal T1 (left, right),
  subarticular ``(5, 2, N, S, S)`` on Axial T2 (left, right; the right side mirrored).

Points come from a table with ``study_id, series_id, stack, condition, level, world_x, world_y, world_z``:
``dataset.labels`` when training, a ``coords.csv`` of ``spine locate`` at inference. Crops are cut by
``spinedata.crops.crop_around`` in the point's own stack (geometry exact; training jitter, rotation and
zoom are applied in mm inside the crop, so nothing is resampled twice).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from spinedata.conditions import CONDITION_GROUPS, ConditionGroup
from spinedata.constants import LEVELS, MISSING, target_name
from spinedata.crops import crop_around
from spinedata.intensity import stack_intensity_range
from spinemodels.data.sampling import unpack_index
from spinemodels.data.stackio import LazyStoreDataset
from spinemodels.errors import ConfigError

WORLD = ["world_x", "world_y", "world_z"]
POINT_COLUMNS = ["study_id", "series_id", "stack", "condition", "level", *WORLD]
"""Columns a point table needs (``dataset.labels`` and ``coords.csv`` both have them)."""


GradeGroup = ConditionGroup
"""A condition group graded by one model (``spinedata.conditions``)."""

GRADE_GROUPS: dict[str, GradeGroup] = CONDITION_GROUPS
"""The groups a grader can be trained for: every condition group (``spinedata.conditions``)."""


@dataclass(frozen=True)
class CropPoint:
    """Where one crop is cut: a stack of a series, and the point in LPS mm."""

    series_id: str
    stack: int
    world: tuple[float, float, float]


@dataclass(frozen=True)
class GradeSample:
    """One study of one group: ``points[level][side]`` (None when unknown) and ``targets[level][side]``."""

    study_id: str
    points: tuple[tuple[CropPoint | None, ...], ...]
    targets: tuple[tuple[int, ...], ...]


def _check_points(points: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in POINT_COLUMNS if c not in points.columns]
    if missing:
        raise ConfigError(f"point table lacks the columns {missing}; expected {POINT_COLUMNS} "
                          "(dataset.labels or the coords.csv of `spine locate`)")
    return points.assign(study_id=points["study_id"].astype(str), series_id=points["series_id"].astype(str))


def make_grade_samples(points: pd.DataFrame, targets: pd.DataFrame | None, study_ids: list[str],
                       group: GradeGroup, *, need_points: bool) -> list[GradeSample]:
    """One sample per study of ``study_ids``.

    points: rows with ``POINT_COLUMNS`` (rows with ``stack < 0`` or non-finite world coordinates count as
    unknown; the first row of a (study, condition, level) is used). targets: ``dataset.targets`` (codes)
    or None (all -1). ``need_points``: drop studies without any point of the group (training).
    """
    table = _check_points(points)
    table = table[table["condition"].isin(group.conditions) & (table["stack"] >= 0)]
    table = table[np.isfinite(table[WORLD].to_numpy(dtype=np.float64)).all(axis=1)]
    first = table.drop_duplicates(["study_id", "condition", "level"]).set_index(["study_id", "condition", "level"])
    codes = None
    if targets is not None and len(targets):
        codes = targets.assign(study_id=targets["study_id"].astype(str)).set_index("study_id")
    samples = []
    for study_id in (str(s) for s in study_ids):
        grid, labels, found = [], [], False
        for level in LEVELS:
            row_points, row_targets = [], []
            for condition in group.conditions:
                key = (study_id, condition, level)
                point = None
                if key in first.index:
                    rec = first.loc[key]
                    point = CropPoint(str(rec["series_id"]), int(rec["stack"]),
                                      tuple(float(rec[w]) for w in WORLD))
                    found = True
                row_points.append(point)
                column = target_name(condition, level)
                code = MISSING
                if codes is not None and study_id in codes.index and column in codes.columns:
                    value = codes.at[study_id, column]
                    code = int(value) if pd.notna(value) else MISSING
                row_targets.append(code)
            grid.append(tuple(row_points))
            labels.append(tuple(row_targets))
        if need_points and not found:
            continue
        samples.append(GradeSample(study_id, tuple(grid), tuple(labels)))
    return samples


@dataclass
class CropSettings:
    """How crops are cut and augmented: the crop part of a grading task's data config (``GradeDataConfig``)."""

    image_size: int = 224  # output pixels per side of every crop
    side_mm: float = 50.0  # physical side of the crop (mm)
    n_slices: int = 11  # slices per crop, centred on the point's nearest slice
    jitter_mm: float = 5.0  # training: crop centre moves up to this many mm along rows and columns
    jitter_slices: int = 2  # training: centre slice moves up to this many slices (stage-1 errors)
    rotate_deg: float = 10.0  # training: in-plane rotation within +-this (degrees)
    zoom: float = 0.1  # training: field of view multiplied by exp(U(-zoom, zoom))
    intensity: float = 0.3  # training: gamma exp(U(-x, x)), contrast 1 +- x/2, brightness +- x/6
    noise: float = 0.03  # training: largest sigma of added Gaussian noise (0-1 intensities)
    blur_p: float = 0.2  # training: probability of a Gaussian blur (sigma 0.5-1.5 px)


class PixelCache:
    """Whole stacks and their 1st-99th percentile range, least recently used dropped beyond ``max_bytes``.

    One per dataset object, hence one per DataLoader worker.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[np.ndarray, tuple[float, float]]] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple, stack: Any) -> tuple[np.ndarray, tuple[float, float]]:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        volume = np.asarray(stack.read())
        item = (volume, stack_intensity_range(volume))
        if volume.nbytes <= self.max_bytes:
            self._items[key] = item
            self._bytes += volume.nbytes
            while self._bytes > self.max_bytes:
                _, (dropped, _) = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
        return item


def augment_intensity(crop: np.ndarray, rng: np.random.Generator, settings: CropSettings) -> np.ndarray:
    """Random gamma, contrast, brightness, blur and noise on a 0-1 crop ``(N, S, S)``."""
    x = settings.intensity
    out = np.clip(crop, 0.0, 1.0) ** math.exp(rng.uniform(-x, x))
    out = out * rng.uniform(1 - x / 2, 1 + x / 2) + rng.uniform(-x / 6, x / 6)
    if rng.random() < settings.blur_p:
        out = ndimage.gaussian_filter(out, sigma=(0.0, *(2 * [rng.uniform(0.5, 1.5)])))
    if settings.noise > 0:
        out = out + rng.normal(0.0, rng.uniform(0.0, settings.noise), out.shape)
    return out.astype(np.float32)


class CropDataset(LazyStoreDataset):
    """Base of the grading datasets: cuts crops from a store through a bounded per-worker stack cache.

    ``source``: a store path (opened lazily in each worker) or an opened dataset. ``cache``: a stack cache to
    share with other datasets (inference: one per study), else one of ``cache_mb``.
    """

    def __init__(self, source: Any, samples: list, group: GradeGroup, settings: CropSettings, train: bool,
                 cache_mb: int = 1024, cache: PixelCache | None = None):
        super().__init__(source)
        self.samples, self.group, self.settings, self.train = samples, group, settings, train
        self.cache = cache if cache is not None else PixelCache(cache_mb * 2**20)

    def __len__(self) -> int:
        return len(self.samples)

    def crop(self, study_id: str, point: CropPoint, mirror: bool, rng: np.random.Generator | None) -> np.ndarray:
        """One ``(N, S, S)`` crop, 0-1 intensities, augmented when training."""
        s = self.settings
        stack = self.dataset.study(study_id).series[point.series_id].stacks[point.stack]
        volume, value_range = self.cache.get((study_id, point.series_id, point.stack), stack)
        augment = self.train and rng is not None
        crop = crop_around(
            volume, stack.geometry, point.world, s.side_mm, s.n_slices, s.image_size, mirror=mirror,
            intensity_range=value_range,
            jitter_mm=s.jitter_mm if augment else 0.0, jitter_slices=s.jitter_slices if augment else 0,
            rng=rng if augment else None,
            angle_deg=float(rng.uniform(-s.rotate_deg, s.rotate_deg)) if augment else 0.0,
            scale=math.exp(rng.uniform(-s.zoom, s.zoom)) if augment else 1.0,
        )
        return augment_intensity(crop, rng, s) if augment else crop


class GradeDataset(CropDataset):
    """Sample: ``image`` ``(5, K, N, S, S)`` float32 (zeros where a point is unknown), ``present`` ``(5, K)``
    bool, ``target`` ``(5, K)`` int64 (-1 missing or no crop), ``study_id``. ``samples``: ``GradeSample``."""

    def __getitem__(self, index) -> dict:
        index, rng = unpack_index(index)
        sample = self.samples[index]
        s, levels, sides = self.settings, len(LEVELS), self.group.sides
        image = np.zeros((levels, sides, s.n_slices, s.image_size, s.image_size), dtype=np.float32)
        present = np.zeros((levels, sides), dtype=bool)
        for i in range(levels):
            for k in range(sides):
                point = sample.points[i][k]
                if point is not None:
                    image[i, k] = self.crop(sample.study_id, point, self.group.mirror[k], rng)
                    present[i, k] = True
        target = np.where(present, np.asarray(sample.targets, dtype=np.int64), MISSING)
        return {"image": torch.from_numpy(image), "present": torch.from_numpy(present),
                "target": torch.from_numpy(target), "study_id": sample.study_id}


@dataclass(frozen=True)
class LevelSample:
    """One crop to grade: a study's level (index into LEVELS) and side (index into the group's conditions)."""

    study_id: str
    level: int
    side: int
    point: CropPoint
    target: int


def level_samples(samples: list[GradeSample], *, need_target: bool,
                  repeats: tuple[int, ...] = (1, 1, 1)) -> list[LevelSample]:
    """The (level, side) crops of study samples: every point (``need_target``: every labelled point), each
    repeated ``repeats[target]`` times (mild oversampling of the rarer grades; 1 = once per epoch)."""
    out = []
    for sample in samples:
        for i, row in enumerate(sample.points):
            for k, point in enumerate(row):
                target = int(sample.targets[i][k])
                if point is None or (need_target and target < 0):
                    continue
                times = repeats[target] if target >= 0 else 1
                out += [LevelSample(sample.study_id, i, k, point, target)] * times
    return out


class LevelGradeDataset(CropDataset):
    """Sample: ``image`` ``(N, S, S)`` float32, ``level``, ``side``, ``target`` (int64; -1 missing), ``study_id``.
    ``samples``: ``LevelSample``."""

    def __getitem__(self, index) -> dict:
        index, rng = unpack_index(index)
        sample = self.samples[index]
        image = self.crop(sample.study_id, sample.point, self.group.mirror[sample.side], rng)
        return {"image": torch.from_numpy(image), "level": sample.level, "side": sample.side,
                "target": sample.target, "study_id": sample.study_id}
