"""The point refiner (``fine_keypoints``): crops put a point where their target says, the dataset's targets are
the displacements it made, the inference step moves points by the networks' answers (flip-averaged) and
refuses long moves, and ``locate`` with a refiner run moves the spinal points within their slices only."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spinedata.constants import CONDITIONS, LEVELS
from spinemodels.catalog import config_from_dict, get_task
from spinemodels.data.point_crops import PointCropDataset, crop_around, labelled_points, offset_in_crop
from spinemodels.errors import ConfigError
from spinemodels.inference.locate import locate
from spinemodels.inference.point_refine import PointRefineOptions, PointRefiner
from spinemodels.inference.runs import FoldModels
from spinemodels.inference.slice_refine import SliceRefineOptions
from spinemodels.inference.stage_one_networks import keypoint_shift_set
from spinemodels.networks.point_refiner import PointRefiner as PointRefinerNet
from tests.helpers.spinemodels_fakes import make_fake_dataset, one_torch_thread  # noqa: F401
from tests.helpers.tiny_runs import TINY, train_runs

WORLD = ["world_x", "world_y", "world_z"]


def _blob(shape, centre, spacing, sigma_mm=1.5):
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    d2 = ((rows - centre[0]) * spacing[0]) ** 2 + ((cols - centre[1]) * spacing[1]) ** 2
    return np.exp(-d2 / (2 * sigma_mm**2)).astype(np.float32)


def _centroid(image):
    weights = np.clip(image - 0.05, 0, None)
    rows, cols = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    return np.array([(weights * rows).sum(), (weights * cols).sum()]) / weights.sum()


@settings(max_examples=40, deadline=None)
@given(drow=st.floats(0.4, 2.0), dcol=st.floats(0.4, 2.0), shift_row=st.floats(-4, 4), shift_col=st.floats(-4, 4),
       degrees=st.floats(-30, 30), position=st.sampled_from([2.0, 2.5]))
def test_a_crop_shows_the_point_where_its_target_says(drow, dcol, shift_row, shift_col, degrees, position):
    """A blob at (row, col) of slices 2 and 3; a crop turned by ``degrees`` around a centre shifted by a few mm:
    the blob's centroid in the crop is the crop's centre plus ``offset_in_crop`` in crop pixels."""
    spacing = (drow, dcol)
    shape = (int(60 / drow), int(60 / dcol))
    truth = np.array([shape[0] / 2 + 0.37, shape[1] / 2 - 0.21])
    volume = np.zeros((5, *shape), dtype=np.float32)
    volume[2] = volume[3] = _blob(shape, truth, spacing)
    centre = truth - np.array([shift_row / drow, shift_col / dcol])
    theta = math.radians(degrees)
    crop = crop_around(volume, position, centre, spacing, 48, 0.5, theta)
    assert crop.shape == (48, 48) and crop.dtype == np.float32 and 0.0 <= crop.min() and crop.max() <= 1.0
    expected = (48 - 1) / 2 + offset_in_crop(truth, centre, spacing, theta) / 0.5
    np.testing.assert_allclose(_centroid(crop), expected, atol=0.15)
    assert np.linalg.norm(offset_in_crop(truth, centre, spacing, theta)) == pytest.approx(math.hypot(shift_row, shift_col),
                                                                                           abs=1e-4)


def test_a_crop_between_two_slices_blends_them():
    volume = np.zeros((4, 40, 40), dtype=np.float32)
    volume[1] = _blob((40, 40), (20.0, 14.0), (1.0, 1.0))
    volume[2] = _blob((40, 40), (20.0, 26.0), (1.0, 1.0))
    left, right = (crop_around(volume, p, np.array([20.0, 20.0]), (1.0, 1.0), 32, 1.0) for p in (1.25, 1.75))
    assert left[15:17, 9:11].mean() > left[15:17, 21:23].mean()  # mostly slice 1
    assert right[15:17, 21:23].mean() > right[15:17, 9:11].mean()  # mostly slice 2


@pytest.fixture(scope="module")
def fake():
    return make_fake_dataset(n_studies=6, seed=3, size=32, n_sag=10)


@pytest.mark.parametrize("train", [True, False])
def test_the_dataset_targets_are_the_displacements_it_made(fake, train):
    points = labelled_points(fake, fake.study_ids)
    assert len(points) == 5 * len(fake.study_ids)
    data = PointCropDataset(fake, points, 16, 1.0, train, crops_per_point=3, jitter_mm=3.0)
    assert len(data) == 3 * len(points)
    for i in range(0, len(data), 7):
        sample = data[(i, 5, 1)]
        assert sample["image"].shape == (1, 16, 16) and sample["target"].dtype == torch.float32
        target = sample["target"].numpy()
        assert np.linalg.norm(target) == pytest.approx(sample["start_mm"], abs=1e-4)  # turning and flipping keep it
        assert sample["start_mm"] <= 3.0 * math.sqrt(2) + 1e-6
        if not train:  # neither turned nor flipped: the target is the label minus the centre, in mm
            assert np.all(np.abs(target) <= 3.0 + 1e-5)
    again = data[(4, 5, 1)]
    assert torch.equal(again["image"], data[(4, 5, 1)]["image"])  # the same key, the same sample


class _Constant(torch.nn.Module):
    """Answers the same offset (mm) for every crop."""

    def __init__(self, offset):
        super().__init__()
        self.offset = torch.tensor(offset, dtype=torch.float32)

    def forward(self, crops):
        return self.offset.expand(len(crops), 2)


def _refiner(offset, **options):
    task = SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(crop_px=8, step_mm=0.5)))
    runs = [FoldModels(run=None, task=task, networks={0: _Constant(offset)}, study_fold={"1": 0})]
    return PointRefiner(runs, PointRefineOptions(**options))


def test_the_refiner_moves_points_by_the_answers_and_averages_the_flip():
    volume = np.random.default_rng(0).random((6, 40, 40)).astype(np.float32)
    start = np.tile([20.0, 18.0], (5, 1))
    positions = np.full(5, 2.4)
    flipped = _refiner([1.0, 0.5]).refine(volume, positions, start, (0.5, 2.0), "1", False, "cpu")
    np.testing.assert_allclose(flipped.points - start, np.tile([4.0, 0.0], (5, 1)))  # 2 x 1 mm / 0.5 mm; col cancels
    plain = _refiner([1.0, 0.5], flip=False, iterations=1).refine(volume, positions, start, (0.5, 2.0), "1", False,
                                                                    "cpu")
    np.testing.assert_allclose(plain.points - start, np.tile([2.0, 0.25], (5, 1)))
    np.testing.assert_allclose(plain.moved_mm, math.hypot(1.0, 0.5))
    assert plain.problems == [()] * 5
    assert _refiner([1.0, 0.5]).refine(volume, positions, start, (0.5, 2.0), "2", True, "cpu") is None  # no fold


def test_the_refiner_refuses_a_long_move_and_says_so():
    volume = np.zeros((6, 40, 40), dtype=np.float32)
    start = np.tile([20.0, 18.0], (5, 1))
    far = _refiner([4.0, 0.0], max_move_mm=6.0).refine(volume, np.full(5, 2.0), start, (1.0, 1.0), "1", False, "cpu")
    np.testing.assert_array_equal(far.points, start)
    np.testing.assert_allclose(far.moved_mm, 8.0)
    assert all(p and "8.0 mm (> 6 mm)" in p[0] for p in far.problems)


def test_options_and_config_are_checked():
    with pytest.raises(Exception, match="iterations"):
        PointRefineOptions(iterations=0)
    with pytest.raises(ConfigError, match="multiple of 4"):
        config_from_dict({"task": "fine_keypoints", "data": {"crop_px": 30}})
    with pytest.raises(ValueError, match="multiple of 4"):
        PointRefinerNet(crop_px=30)
    net = PointRefinerNet(crop_px=16, step_mm=1.0, width=4)
    out = net(torch.rand(3, 1, 16, 16))
    assert out.shape == (3, 2) and bool((out.abs() <= 7.5).all())  # within the crop's cell centres


TINY_FINE = {"task": "fine_keypoints", "model": {"width": 4},
             "data": {"crop_px": 16, "step_mm": 1.0, "crops_per_point": 2, "val_crops_per_point": 1, "cache_mb": 64},
             "optim": {"lr": 1e-3, "schedule": "constant"}, "train": TINY["keypoints"]["train"]}


def test_locate_with_a_refiner_moves_the_spinal_points_within_their_slices(fake, tmp_path):
    runs = train_runs({"finder": TINY["slice_finder"], "kp": TINY["keypoints"], "fine": TINY_FINE}, fake, tmp_path)
    stage_one = [runs["finder"], runs["kp"]]
    fast = {"progress": False, "device": "cpu", "study_ids": fake.study_ids[:2], "keypoint_shifts": keypoint_shift_set(1)}
    plain, _ = locate(fake, stage_one, **fast)
    once = SliceRefineOptions(second_look=False)  # the slice is not measured again at the moved points
    refined, _ = locate(fake, [*stage_one, runs["fine"]], point_refine=PointRefineOptions(max_move_mm=100.0),
                        slice_refine=once, **fast)
    one = {**fast, "study_ids": fake.study_ids[:1]}
    off, _ = locate(fake, [*stage_one, runs["fine"]], point_refine=None, **one)
    assert off.equals(plain.iloc[:25]) and len(refined) == len(plain) == 50
    spinal = refined["condition"] == CONDITIONS[0]
    assert (refined.loc[spinal, "series_id"] == "1").all() and set(refined.loc[spinal, "level"]) == set(LEVELS)
    moved = refined.loc[spinal, WORLD].to_numpy() - plain.loc[spinal, WORLD].to_numpy()
    assert np.linalg.norm(moved, axis=1).max() > 0.01  # the refiner moved the points ...
    for row, step in zip(refined[spinal].itertuples(), moved, strict=True):
        normal = np.asarray(fake.study(row.study_id).series["1"].stacks[row.stack].geometry.normal, dtype=float)
        assert abs(float(step @ normal)) < 1e-6  # ... within their slice (the slice refinement's position stays)
    refused, _ = locate(fake, [*stage_one, runs["fine"]], point_refine=PointRefineOptions(max_move_mm=1e-3), **one)
    spinal_refused = refused[refused["condition"] == CONDITIONS[0]]
    assert len(spinal_refused) == 5 and spinal_refused["warning"].str.contains("point refiner would move it").all()
    assert (spinal_refused["confidence"].to_numpy() <= plain.loc[spinal, "confidence"].to_numpy()[:5] + 1e-12).all()


def test_the_task_reports_each_crops_error_in_mm():
    task = get_task("fine_keypoints")(config_from_dict({"task": "fine_keypoints"}))
    batch = {"target": torch.tensor([[1.0, 0.0], [0.0, -2.0]]), "start_mm": torch.tensor([1.5, 2.5], dtype=torch.float64),
             "study_id": ["a", "b"], "level": ["L1/L2", "L4/L5"]}
    rows = task.predict(torch.tensor([[1.0, 3.0], [0.0, 2.0]]), batch)
    assert [(r["study_id"], r["level"], r["start_mm"]) for r in rows] == [("a", "L1/L2", 1.5), ("b", "L4/L5", 2.5)]
    assert [r["error_mm"] for r in rows] == pytest.approx([3.0, 4.0])
    assert task.evaluate(pd.DataFrame(rows))["median_error_mm"] == pytest.approx(3.5)
    assert float(task.loss(torch.tensor([[1.0, 0.0]]), {"target": torch.tensor([[1.0, 0.0]])})) == 0.0
