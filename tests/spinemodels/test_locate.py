"""``locate``: 25 rows per study whose world points and pixel coordinates agree through the stack geometry;
out-of-fold mode; the label audit finds injected off-by-one labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinedata.constants import CONDITIONS, LEVELS
from spinemodels.audit import audit_labels, correct_labels
from spinemodels.inference.locate import COORD_COLUMNS, LocateError, locate
from spinemodels.inference.stage_one_networks import (
    SHIFT_MATCH_SIGMAS,
    keypoint_points,
    keypoint_shift_set,
    load_stage_one,
)
from tests.helpers.spinemodels_fakes import make_fake_dataset, one_torch_thread  # noqa: F401
from tests.helpers.tiny_runs import TINY, train_runs

BOTH_FOLDS = ["train.folds=[0, 1]", "train.epochs=1"]


@pytest.fixture(scope="module")
def fake():
    return make_fake_dataset(n_studies=6, seed=2, size=32, n_sag=10)


@pytest.fixture(scope="module")
def runs(fake, tmp_path_factory):
    runs = train_runs({"finder": TINY["slice_finder"], "kp": TINY["keypoints"]}, fake, tmp_path_factory.mktemp("runs"),
                      BOTH_FOLDS)
    return list(runs.values())


@pytest.fixture(scope="module")
def located(fake, runs):
    return locate(fake, runs, progress=False, device="cpu")


def test_locate_writes_every_condition_and_level_with_consistent_geometry(fake, located):
    coords, warnings = located
    assert list(coords.columns) == COORD_COLUMNS
    assert len(coords) == 25 * len(fake.study_ids)
    for _, group in coords.groupby("study_id"):
        assert sorted(zip(group["condition"], group["level"], strict=True)) == sorted(
            (c, lv) for c in CONDITIONS for lv in LEVELS)
    for row in coords.itertuples():
        study = fake.study(row.study_id)
        stack = study.series[row.series_id].stacks[row.stack]
        assert stack.instance_numbers[row.slice] == row.instance_number
        on_plane = stack.voxel_to_world([row.slice, row.y, row.x])
        world = np.array([row.world_x, row.world_y, row.world_z])
        # the world point lies plane_distance_mm along the slice normal from its (x, y) on that slice
        assert np.linalg.norm(world - on_plane) == pytest.approx(abs(row.plane_distance_mm), abs=1e-6)
        if row.condition == CONDITIONS[0]:  # on its nearest slice (off the plane when the slice was refined)
            assert row.series_id == "1" and abs(row.plane_distance_mm) <= 0.5 * stack.geometry.slice_spacing + 1e-6
        else:
            assert row.series_id == ("2" if "Foraminal" in row.condition else "3")
        assert 0.0 <= row.confidence <= 1.0
    assert all("outside" in w or "check" in w for w in warnings), warnings  # untrained models miss, but say so


def test_without_refinement_the_spinal_points_lie_on_the_slice_finders_slices(fake, runs, located):
    plain, _ = locate(fake, runs, progress=False, device="cpu", slice_refine=None)
    spinal = plain[plain["condition"] == CONDITIONS[0]]
    assert len(spinal) == 5 * len(fake.study_ids) and (spinal["plane_distance_mm"] == 0.0).all()


def test_out_of_fold_uses_only_the_held_out_model(fake, runs, located):
    oof, _ = locate(fake, runs, oof=True, progress=False, device="cpu")
    full, _ = located
    assert len(oof) == len(full) == 25 * len(fake.study_ids)
    assert not np.allclose(oof[["world_x", "world_y", "world_z"]], full[["world_x", "world_y", "world_z"]])


def test_a_folder_of_runs_gives_the_stage_one_runs_in_it(fake, runs, located):
    """``--model runs/``: the slice finder and keypoints runs of the folder, the same points."""
    folder = {p.parent for p in map(Path, runs)}
    assert len(folder) == 1
    coords, _ = locate(fake, [folder.pop()], progress=False, device="cpu")
    pd.testing.assert_frame_equal(coords, located[0])


def test_locate_needs_both_stage_one_models(fake, runs):
    with pytest.raises(LocateError, match="needs a keypoints run"):
        locate(fake, runs[:1], progress=False, device="cpu")


def _shift_levels(labels: pd.DataFrame, study_id: str, condition: str, shift: int) -> pd.DataFrame:
    """Rename the levels of one study/condition by ``shift`` (the point of L2/L3 called L1/L2 for -1)."""
    out = labels.copy()
    mask = (out["study_id"] == study_id) & (out["condition"] == condition)
    out.loc[mask, "level"] = [LEVELS[LEVELS.index(lv) + shift] if 0 <= LEVELS.index(lv) + shift < 5 else "gone"
                              for lv in out.loc[mask, "level"]]
    return out[out["level"] != "gone"]


def test_audit_finds_injected_off_by_one_labels_and_corrects_them(fake):
    truth = fake.labels  # exact points: play the role of perfect out-of-fold predictions
    coords = truth[["study_id", "condition", "level", "world_x", "world_y", "world_z"]]
    noisy = _shift_levels(truth, "101", CONDITIONS[0], -1)
    noisy = _shift_levels(noisy, "103", CONDITIONS[1], +1)
    findings = audit_labels(noisy, coords)
    flagged = {(r.study_id, r.condition) for r in findings.itertuples()}
    assert flagged == {("101", CONDITIONS[0]), ("103", CONDITIONS[1])}
    spinal = findings[findings["study_id"] == "101"]
    assert (spinal["kind"] == "shifted").all() and (spinal["shift"] == 1).all()
    assert len(spinal) == 4  # L2/L3..L5/S1 were called L1/L2..L4/L5
    fixed, notes = correct_labels(noisy, findings)
    merged = fixed.merge(truth, on=["study_id", "series_id", "instance_number", "condition", "x", "y"],
                         suffixes=("", "_true"))
    assert len(merged) == len(fixed) and (merged["level"] == merged["level_true"]).all()
    assert len(notes) == 8


def test_audit_correction_never_puts_two_points_at_one_level(fake):
    """One study's L3/L4 spinal point sits on L4/L5, whose own point is right: renaming it would give two
    L4/L5 points, so that study/condition is left as it is and said so; another study is still corrected."""
    truth = fake.labels
    coords = truth[["study_id", "condition", "level", "world_x", "world_y", "world_z"]]
    noisy = _shift_levels(truth, "101", CONDITIONS[0], -1)
    spinal = (noisy["study_id"] == "102") & (noisy["condition"] == CONDITIONS[0])
    l34, l45 = noisy.index[spinal & (noisy["level"] == "L3/L4")][0], noisy.index[spinal & (noisy["level"] == "L4/L5")][0]
    noisy.loc[l34, ["world_x", "world_y", "world_z", "x", "y"]] = noisy.loc[l45, ["world_x", "world_y", "world_z", "x", "y"]].to_numpy()
    findings = audit_labels(noisy, coords)
    clash = findings[findings["study_id"] == "102"]
    assert list(clash["level"]) == ["L3/L4"] and list(clash["suggested_level"]) == ["L4/L5"]
    fixed, notes = correct_labels(noisy, findings)
    ours = fixed[(fixed["study_id"] == "102") & (fixed["condition"] == CONDITIONS[0])]
    assert sorted(ours["level"]) == sorted(noisy.loc[spinal, "level"])  # unchanged
    assert not fixed.duplicated(["study_id", "condition", "level"]).any()
    assert [n for n in notes if "102" in n] == [
        f"study 102 {CONDITIONS[0]}: not corrected: the shift would put two points at L4/L5 (only some levels "
        "look shifted); check the images"]
    assert sum("101" in n for n in notes) == 4  # the other study is corrected as before


def test_audit_reports_far_off_points_and_accepts_good_labels(fake):
    truth = fake.labels
    coords = truth[["study_id", "condition", "level", "world_x", "world_y", "world_z"]]
    assert audit_labels(truth, coords).empty
    moved = truth.copy()
    moved.loc[0, "world_x"] += 40.0
    findings = audit_labels(moved, coords)
    assert len(findings) == 1 and findings.iloc[0]["kind"] == "far"


def test_keypoint_points_averaged_over_shifted_grids_stay_near_the_unshifted_ones(fake, runs):
    """Four sub-pixel placements of the keypoint grid: each level's point is the mean of peaks within
    ``SHIFT_MATCH_SIGMAS`` heatmap sigmas of the unshifted grid's point, mapped back to the stack."""
    import torch

    keypoints = load_stage_one(runs, torch.device("cpu")).keypoints
    data = TINY["keypoints"]["data"]
    bound_mm = SHIFT_MATCH_SIGMAS * data["sigma_px"] * data["fov_mm"] / data["image_size"]
    moved = []
    for study_id in fake.study_ids:
        stack = fake.study(study_id).series["1"].stacks[0]
        centre = stack.shape[0] // 2
        plain, heat = keypoint_points(keypoints, stack, centre, study_id, False, "cpu", {}, keypoint_shift_set(1))
        shifted, heat_4 = keypoint_points(keypoints, stack, centre, study_id, False, "cpu", {},
                                          keypoint_shift_set(4))
        assert plain.shape == shifted.shape == (5, 2) and np.array_equal(heat, heat_4)
        moved.append(np.linalg.norm((shifted - plain) * np.asarray(stack.geometry.pixel_spacing), axis=1))
    moved = np.concatenate(moved)
    assert moved.max() <= bound_mm + 1e-6 and moved.max() > 0
    assert keypoint_shift_set(4) == ((0.0, 0.0), (0.0, 0.5), (0.5, 0.0), (0.5, 0.5))
    assert len(set(keypoint_shift_set(9))) == 9 and (2 / 3, 1 / 3) in keypoint_shift_set(9)
    with pytest.raises(LocateError, match="1, 4, 9 or 16"):
        keypoint_shift_set(3)
