"""Anatomical checks of the spinal points, their fallbacks in ``locate``, and studies without a usable
sagittal series (warnings, never a crash)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import spinemodels.inference.locate as locate_module
from spinedata.constants import CONDITIONS, LEVELS
from spinemodels.inference.anatomy_checks import (
    FAILED_CHECK_FACTOR,
    check_levels,
    level_confidence,
    slice_support,
)
from spinemodels.inference.slice_refine import Refinement, SliceRefineOptions
from tests.helpers.spinemodels_fakes import FakeStack, make_fake_dataset, one_torch_thread  # noqa: F401

SPINE = np.array([[0.0, 20.0, 60.0 - 33.0 * j] for j in range(5)])  # L1/L2 on top, 33 mm apart
USED = [Refinement(8.0, True, 0.05, 0.9)] * 5


def test_a_plausible_spine_passes_every_check():
    assert check_levels(SPINE, USED) == [()] * 5
    assert check_levels(SPINE, None) == [()] * 5  # no CSF check off T2


def test_levels_out_of_order_too_close_or_too_far_fail_on_both_sides():
    swapped = SPINE[[0, 2, 1, 3, 4]]
    problems = check_levels(swapped, USED)
    assert all(problems)  # the chain is broken: every level is suspect
    assert any("not head to foot" in p for p in problems[1])
    assert problems[4] == ("another level fails: L1/L2-L2/L3 66 mm apart (plausible 18-55)",)
    squeezed = SPINE.copy()
    squeezed[4, 2] = squeezed[3, 2] - 13.0  # ordered, but 13 mm apart
    problems = check_levels(squeezed, USED)
    assert "13 mm apart" in problems[4][0] and "13 mm apart" in problems[3][0]
    assert problems[0][0].startswith("another level fails: L4/L5-L5/S1 13 mm apart")
    stretched = SPINE.copy()
    stretched[0, 2] += 40.0  # 73 mm to the next level
    problems = check_levels(stretched, USED)
    assert "73 mm apart" in problems[0][0] and problems[2][0].startswith("another level fails")


def test_a_level_on_its_neighbours_disc_leaves_a_double_gap_that_fails():
    """L1/L2-L4/L5 each put one disc too high (on the disc above), L5/S1 right: every gap is plausible in
    millimetres (the last one 50 mm) but the last is twice the others."""
    spine = np.array([[0.0, 20.0, 60.0 - 25.0 * j] for j in range(5)])  # a short spine, 25 mm gaps
    shifted = spine.copy()
    shifted[:4, 2] += 25.0
    assert check_levels(spine, USED) == [()] * 5
    problems = check_levels(shifted, USED)
    assert "2.0 x the median gap (25 mm)" in problems[4][0] and "2.0 x" in problems[3][0]
    assert all(p[0].startswith("another level fails") for p in problems[:3])


def test_a_level_without_the_csf_band_fails_only_itself():
    refinements = list(USED)
    refinements[2] = Refinement(8.0, False, np.nan, 0.1, "a bright band in only 10% of the profiles")
    problems = check_levels(SPINE, refinements)
    assert [bool(p) for p in problems] == [False, False, True, False, False]
    assert "CSF" in problems[2][0] and "10%" in problems[2][0]


def test_confidence_is_slice_support_times_heat_and_drops_on_failure():
    probs = np.zeros((10, 5))
    probs[4, :] = 0.6
    probs[5, :] = 0.3
    probs[9, :] = 0.1
    support = slice_support(probs, np.array([4.2, 5.0, 6.4, 9.0, 0.0]))
    assert np.allclose(support, [0.9, 0.9, 0.3, 0.1, 0.0])
    confidence = level_confidence(support, np.full(5, 0.5), [(), (), ("x",), (), ()])
    assert np.allclose(confidence, [0.45, 0.45, 0.15 * FAILED_CHECK_FACTOR, 0.05, 0.0])


def _canal_study(seed: int = 3):
    """One fake study (points 30-40 mm apart) whose Sagittal T2 shows a bright CSF band 8 mm wide around the
    midline slice along the whole canal column, and the spinal truth (stack row, col, slice per level)."""
    fake = make_fake_dataset(n_studies=1, seed=seed, size=256, n_sag=12)
    study_id = fake.study_ids[0]
    study = fake.study(study_id)
    stack = study.series["1"].stacks[0]
    spinal = fake.labels[(fake.labels["condition"] == CONDITIONS[0])].sort_values("level")
    midline = int(spinal["slice"].iloc[0])
    n, rows, cols = stack.shape
    slice_mm = stack.geometry.slice_spacing
    half = 4.0 / slice_mm  # band half width, slices
    share = np.clip(np.minimum(np.arange(n) + 0.5, midline + half) - np.maximum(np.arange(n) - 0.5, midline - half),
                    0, 1)
    col = float(spinal["x"].mean())
    pixels = np.full((n, rows, cols), 100.0)
    strip = np.abs(np.arange(cols) - col) <= 5
    pixels[:, :, strip] += 900.0 * share[:, None, None]
    pixels += np.random.default_rng(seed).normal(0, 10, pixels.shape)
    study.series["1"].stacks[0] = FakeStack(stack.geometry, pixels.astype(np.int16))
    return fake, study, spinal, midline


@pytest.fixture
def patched(monkeypatch):
    """``locate_study`` with stand-in models: the slice finder sure of slice 1 (off the canal), the keypoint
    model returning the true in-plane points, zero offsets."""
    fake, study, spinal, midline = _canal_study()
    points = spinal[["y", "x"]].to_numpy(float)

    def probs(runs, stack, study_id, oof, device, cache):
        p = np.full((stack.shape[0], 5), 0.01)
        p[1] = 1.0
        return p / p.sum(0)

    offsets = pd.DataFrame([{"condition": c, "level": lv, "dx": 0.0, "dy": 0.0, "dz": 0.0, "n": 1}
                            for c in CONDITIONS[1:] for lv in LEVELS]).set_index(["condition", "level"])
    monkeypatch.setattr(locate_module, "slice_probs", probs)
    monkeypatch.setattr(locate_module, "keypoint_points", lambda *a: (points.copy(), np.full(5, 0.8)))
    monkeypatch.setattr(locate_module, "offsets_for", lambda *a: offsets)
    return fake, study, spinal, midline


def test_a_slice_off_the_canal_fails_the_csf_check_and_the_fallback_finds_the_midline(patched):
    fake, study, spinal, midline = patched
    rows, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu",
                                                slice_refine=SliceRefineOptions())
    coords = pd.DataFrame(rows)
    assert len(coords) == 25
    found = coords[coords["condition"] == CONDITIONS[0]].sort_values("level")
    assert (np.abs(found["slice"].to_numpy() - midline) <= 0).all()
    assert found["warning"].str.contains("fallback").all()
    assert any("failed the checks" in w for w in warnings)
    assert (coords["warning"] != "").all()  # every row of a fallback says so


def test_without_csf_the_t1_series_is_the_fallback_and_without_it_every_row_warns(patched):
    fake, study, spinal, midline = patched
    stack = study.series["1"].stacks[0]
    dark = np.random.default_rng(0).normal(100, 10, stack.shape)  # no CSF anywhere, bright fat at the back
    dark[:, :, -30:] += 1000.0
    study.series["1"].stacks[0] = FakeStack(stack.geometry, dark.astype(np.int16))
    rows, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu",
                                                slice_refine=SliceRefineOptions())
    coords = pd.DataFrame(rows)
    spinal_rows = coords[coords["condition"] == CONDITIONS[0]]
    assert (spinal_rows["series_id"] == "2").all()
    assert coords["warning"].str.contains("Sagittal T1").all() and coords["warning"].str.contains("fallback").all()
    assert (coords["confidence"] <= 0.5 * 0.8 * 0.5 + 1e-9).all()
    del study.series["2"]
    rows, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu",
                                                slice_refine=SliceRefineOptions())
    coords = pd.DataFrame(rows)
    assert len(coords) == 25 and coords["warning"].str.contains("check failed: no CSF band").all()
    assert (coords["confidence"] <= 0.8 * FAILED_CHECK_FACTOR + 1e-9).all()
    assert any("5 level(s) fail the anatomical checks" in w for w in warnings)


def test_no_t2_series_uses_t1_with_a_warning_on_every_row(patched):
    fake, study, spinal, midline = patched
    del study.series["1"]
    rows, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu",
                                                slice_refine=SliceRefineOptions())
    coords = pd.DataFrame(rows)
    assert len(coords) == 25
    assert (coords[coords["condition"] == CONDITIONS[0]]["series_id"] == "2").all()
    assert coords["warning"].str.contains("Sagittal T1").all()
    assert any("Sagittal T1" in w for w in warnings)


class _Broken(FakeStack):
    def read(self, slices=None):
        raise OSError("chunk checksum mismatch")


def test_unusable_or_missing_sagittal_stacks_give_warnings_not_crashes(patched, monkeypatch):
    fake, study, spinal, midline = patched
    def probs(runs, stack, *args):
        stack.read()  # a broken stack raises here, as the real slice finder's input would
        return np.full((stack.shape[0], 5), 1.0 / stack.shape[0])

    monkeypatch.setattr(locate_module, "slice_probs", probs)
    t2 = study.series["1"].stacks[0]
    study.series["1"].stacks[0] = _Broken(t2.geometry, t2.pixels)
    rows, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu",
                                                slice_refine=SliceRefineOptions())
    assert len(rows) == 25 and {r["series_id"] for r in rows if r["condition"] == CONDITIONS[0]} == {"2"}
    assert any("unusable (chunk checksum mismatch)" in w for w in warnings)
    del study.series["2"]
    rows, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu",
                                                slice_refine=SliceRefineOptions())
    assert rows == [] and any("no usable sagittal stack" in w for w in warnings)
    del study.series["1"]
    rows, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu")
    assert rows == [] and any("no usable sagittal stack" in w for w in warnings)


def test_a_series_of_the_wrong_role_or_too_few_slices_is_not_used(patched):
    """A "Sagittal T2/STIR" series whose slices are axial, and one with 2 slices, are skipped with a warning;
    the Sagittal T1 series is used (with its own warning)."""
    from spinedata.geometry import StackGeometry
    from tests.helpers.spinemodels_fakes import AX_IOP

    fake, study, spinal, midline = patched
    t2 = study.series["1"].stacks[0]
    n, rows, cols = t2.shape
    axial = StackGeometry.from_positions(AX_IOP, t2.geometry.pixel_spacing, [(0.0, 0.0, 4.0 * i) for i in range(n)],
                                         np.arange(1, n + 1), (rows, cols))
    study.series["1"].stacks[0] = FakeStack(axial, t2.pixels)
    two = StackGeometry.from_positions(t2.geometry.orientation, t2.geometry.pixel_spacing, t2.positions[:2],
                                       np.arange(1, 3), (rows, cols))
    study.series["1"].stacks.append(FakeStack(two, t2.pixels[:2]))
    rows_out, warnings = locate_module.locate_study(study, [], [], oof=False, device="cpu",
                                                    slice_refine=SliceRefineOptions())
    assert len(rows_out) == 25
    assert {r["series_id"] for r in rows_out if r["condition"] == CONDITIONS[0]} == {"2"}
    assert any("stack 0 is not sagittal (slice normal 90 degrees from left-right)" in w for w in warnings)
    assert any("stack 1 has 2 slice(s); not used" in w for w in warnings)
