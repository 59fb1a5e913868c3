"""Sub-slice refinement of the spinal points (``spinemodels.inference.slice_refine``): a bright band whose centre is
known is recovered to well under a slice; weak or contradicting evidence falls back to the starting slice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinemodels.inference.slice_refine import (
    SliceRefineError,
    SliceRefineOptions,
    band_design,
    canal_direction,
    fit_band_centres,
    line_centre,
    percentile_scaled,
    prepared_volume,
    refine_levels,
    refine_slice,
    weighted_median,
)

SPACING_MM = 4.0
CANAL = slice(16, 32)
"""Columns of the bright canal: 16 mm front to back, as deep as a dural sac, so the refinement's samples
(6 mm in front of and behind the point) stay inside it."""


def canal_volume(centre: float | np.ndarray, half_width_mm: float = 9.0, n: int = 15, size: int = 48,
                 noise: float = 0.05, seed: int = 0, tilt: float = 0.0) -> np.ndarray:
    """(n, size, size) sagittal-like stack: a bright canal (columns ``CANAL``, every row) that fills the band
    ``centre +- half_width_mm`` across slices (one centre, or one per row), each slice averaging 9 planes
    over its thickness (partial volume), on a darker background with bright fat behind it (columns 40-47)
    and Gaussian noise. ``tilt``: slices the centre moves per 100 rows."""
    rng = np.random.default_rng(seed)
    volume = np.full((n, size, size), 0.2)
    volume[:, :, 40:] = 1.0
    half = half_width_mm / SPACING_MM
    planes = (np.arange(9) - 4) / 9.0
    rows = np.arange(size)
    centres = np.broadcast_to(np.asarray(centre, dtype=float), (size,)) + tilt * (rows - size / 2) / 100.0
    for k in range(n):
        for row in rows:
            inside = np.mean(np.abs(k + planes - centres[row]) <= half)
            volume[k, row, CANAL] += 0.8 * inside
    return volume + noise * rng.standard_normal(volume.shape)


@pytest.mark.parametrize("centre", [7.0, 7.23, 7.5, 6.81, 8.4])
def test_a_band_with_a_known_centre_is_recovered_to_a_fifth_of_a_slice(centre):
    volume = percentile_scaled(canal_volume(centre, seed=int(centre * 100)))
    found = refine_slice(volume, start=round(centre) + 0.3, centre_rc=np.array([24.0, 23.5]),
                         direction_mm=np.array([1.0, 0.0]), pixel_spacing=(1.0, 1.0), slice_spacing=SPACING_MM)
    assert found.used, found.reason
    assert abs(found.position - centre) < 0.2
    assert found.spread < 0.2 and found.share > 0.9


def test_a_canal_tilted_across_the_slices_gives_the_centre_at_the_point():
    volume = percentile_scaled(canal_volume(7.3, tilt=1.0))
    found = refine_slice(volume, 7.0, np.array([24.0, 23.5]), np.array([1.0, 0.0]), (1.0, 1.0), SPACING_MM)
    assert found.used and abs(found.position - 7.3) < 0.2


def test_the_noiseless_fit_is_exact_on_the_grid():
    ks = np.arange(3.0, 12.0)
    truth = band_design(ks, np.array([7.36]), np.array([2.1]))[0, 0]
    profiles = np.stack([0.1 + 0.9 * truth, 0.3 + 0.2 * truth])
    centres, amplitude, rms = fit_band_centres(profiles, ks, np.arange(1.0, 3.01, 0.05), grid_step=0.02)
    np.testing.assert_allclose(centres, 7.36, atol=0.011)
    np.testing.assert_allclose(amplitude, [0.9, 0.2], atol=0.02)
    assert rms.max() < 0.01


def test_no_bright_band_keeps_the_starting_slice():
    rng = np.random.default_rng(1)
    volume = percentile_scaled(0.5 + 0.05 * rng.standard_normal((15, 96, 48)))  # rows: the 60 mm sampled fit
    found = refine_slice(volume, 6.6, np.array([48.0, 23.5]), np.array([1.0, 0.0]), (1.0, 1.0), SPACING_MM)
    assert not found.used and found.position == 6.6
    assert "bright band" in found.reason


def test_a_faint_band_falls_back():
    volume = canal_volume(7.3)
    volume[:, :, CANAL] = 0.2 + 0.05 * (volume[:, :, CANAL] - 0.2)  # CSF almost gone (severe stenosis)
    found = refine_slice(percentile_scaled(volume), 7.0, np.array([24.0, 23.5]), np.array([1.0, 0.0]),
                         (1.0, 1.0), SPACING_MM)
    assert not found.used and found.position == 7.0


def test_a_band_far_from_the_slice_finders_estimate_falls_back():
    volume = percentile_scaled(canal_volume(8.3))
    found = refine_slice(volume, 7.0, np.array([24.0, 23.5]), np.array([1.0, 0.0]), (1.0, 1.0), SPACING_MM,
                         SliceRefineOptions(max_shift=1.0))
    assert not found.used and found.position == 7.0
    assert "from the slice finder's" in found.reason
    default = refine_slice(volume, 7.0, np.array([24.0, 23.5]), np.array([1.0, 0.0]), (1.0, 1.0), SPACING_MM)
    assert default.used and abs(default.position - 8.3) < 0.2


def test_scattered_band_centres_fall_back():
    centres = np.random.default_rng(3).uniform(5.5, 9.5, 48)  # every row of the canal somewhere else
    found = refine_slice(percentile_scaled(canal_volume(centres)), 7.5, np.array([24.0, 23.5]),
                         np.array([1.0, 0.0]), (1.0, 1.0), SPACING_MM, SliceRefineOptions(max_shift=3.0))
    assert not found.used and "disagree" in found.reason


def test_refine_levels_follows_the_canal_between_levels():
    volume = canal_volume(7.3, n=15)
    points = np.array([[8.0, 23.5], [16.0, 23.5], [24.0, 23.5], [32.0, 23.5], [40.0, 23.5]])
    found = refine_levels(volume * 1000, np.full(5, 7.0), points, (1.0, 1.0), SPACING_MM)
    assert all(f.used for f in found)
    np.testing.assert_allclose([f.position for f in found], 7.3, atol=0.2)
    np.testing.assert_allclose(canal_direction(points, 0), [1.0, 0.0])
    prepared = prepared_volume(volume * 1000, (1.0, 1.0), SliceRefineOptions().step_mm)
    again = refine_levels(prepared, np.full(5, 7.0), points, (1.0, 1.0), SPACING_MM, prepared=True)
    assert again == found  # a stack prepared once gives what refine_levels prepares itself


def test_helpers_and_bad_input():
    assert weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1.0, 5.0])) == 10.0
    assert weighted_median(np.array([3.0, 1.0, 2.0]), np.ones(3)) == 2.0
    with pytest.raises(SliceRefineError, match="max_spread"):
        SliceRefineOptions(max_spread=0.0)
    with pytest.raises(SliceRefineError, match="volume must be"):
        refine_slice(np.zeros((4, 4)), 1.0, np.zeros(2), np.array([1.0, 0.0]), (1.0, 1.0), 4.0)
    with pytest.raises(SliceRefineError, match="points_rc"):
        refine_levels(np.zeros((9, 8, 8)), np.zeros(5), np.zeros((4, 2)), (1.0, 1.0), 4.0)
    few = refine_slice(np.zeros((3, 8, 8)), 1.0, np.array([4.0, 4.0]), np.array([1.0, 0.0]), (1.0, 1.0), 4.0)
    assert not few.used and "slices around" in few.reason


@settings(max_examples=60, deadline=None)
@given(st.floats(-5, 20), st.floats(-0.03, 0.03), st.integers(0, 2**31 - 1))
def test_the_line_fit_finds_the_centre_at_the_point_despite_a_drift_and_outliers(c0, slope, seed):
    rng = np.random.default_rng(seed)
    along = np.repeat(np.arange(-30.0, 31.0), 5)
    centres = c0 + slope * along + rng.normal(0, 0.05, along.size)
    outliers = rng.random(along.size) < 0.15
    centres[outliers] += rng.choice([-2.0, 2.0], int(outliers.sum()))
    weights = rng.uniform(0.5, 2.0, along.size)
    found, residual = line_centre(centres, along, weights)
    assert abs(found - c0) < 0.03  # the centres' noise alone puts a straight mean ~0.005 off
    assert residual.shape == centres.shape and np.median(np.abs(residual[~outliers])) < 0.06
    exact, _ = line_centre(c0 + slope * along, along, weights)
    assert exact == pytest.approx(c0, abs=1e-9)


def test_the_line_fit_needs_centres_on_both_sides_of_the_point():
    centres, weights = np.array([7.0, 7.2, 7.4]), np.array([1.0, 1.0, 3.0])
    found, residual = line_centre(centres, np.array([2.0, 4.0, 6.0]), weights)  # no extrapolation
    assert found == weighted_median(centres, weights) == 7.4
    np.testing.assert_allclose(residual, centres - 7.4)
    with pytest.raises(SliceRefineError, match="centre"):
        SliceRefineOptions(centre="mean")


def test_a_drifting_canal_is_measured_at_the_point_by_the_line_and_off_it_by_the_median():
    # the band's centre runs from 6.4 to 7.6 slices over the 60 mm sampled, but weakly above the point:
    # a median of the centres leans to the stronger half, the line does not
    volume = canal_volume(7.0, size=96, tilt=2.0)
    volume[:, :48, CANAL] = 0.2 + 0.4 * (volume[:, :48, CANAL] - 0.2)  # less CSF contrast above the point
    kwargs = {"centre_rc": np.array([48.0, 23.5]), "direction_mm": np.array([1.0, 0.0]), "pixel_spacing": (1.0, 1.0),
              "slice_spacing": SPACING_MM}
    line = refine_slice(percentile_scaled(volume), 7.0, **kwargs)
    median = refine_slice(percentile_scaled(volume), 7.0, options=SliceRefineOptions(centre="median"), **kwargs)
    assert line.used and median.used
    assert abs(line.position - 7.0) < 0.06 < abs(median.position - 7.0)


def test_locate_refines_only_bright_csf_and_only_when_asked(monkeypatch):
    import torch

    import spinemodels.inference.locate as locate_module
    from spinedata.constants import ROLE_SAG_T1, ROLE_SAG_T2
    from spinedata.geometry import StackGeometry
    from spinemodels.tasks.slice_finder import soft_slices
    from tests.helpers.spinemodels_fakes import SAG_IOP, FakeStack

    volume = canal_volume(7.3) * 1000
    n, size = volume.shape[0], volume.shape[1]
    positions = [(-i * SPACING_MM, 0.0, 0.0) for i in range(n)]
    stack = FakeStack(StackGeometry.from_positions(SAG_IOP, (1.0, 1.0), positions, np.arange(1, n + 1),
                                                   (size, size)), volume)
    probs = np.full((n, 5), 0.01)
    probs[7] = 0.6
    probs[8] = 0.3
    probs /= probs.sum(0)
    points = np.array([[8.0, 23.5], [16.0, 23.5], [24.0, 23.5], [32.0, 23.5], [40.0, 23.5]])
    monkeypatch.setattr(locate_module, "keypoint_points", lambda *a: (points.copy(), np.full(5, 0.9)))
    starts = soft_slices(torch.from_numpy(probs)[None])[0].numpy().astype(np.float64)

    def fit(role, options):
        return locate_module.fit_spinal(stack, "1", 0, role, probs, starts, [], "s", False, "cpu", {}, options)

    refined = fit(ROLE_SAG_T2, SliceRefineOptions())
    assert all(refined.refined) and np.all(np.abs(refined.positions - 7.3) < 0.2)
    for role, options in ((ROLE_SAG_T1, SliceRefineOptions()), (ROLE_SAG_T2, None)):
        kept = fit(role, options)
        assert not any(kept.refined) and np.all(kept.positions == 7.0)
    assert not any("CSF" in p for level in refined.problems for p in level)  # the band is there
    t1 = fit(ROLE_SAG_T1, SliceRefineOptions())
    assert not any("CSF" in p for level in t1.problems for p in level)  # not checked on T1


def test_fine_pixels_are_smoothed_to_the_sampling_step_and_coarse_ones_left_alone():
    from spinemodels.inference.slice_refine import smoothed_to_step

    noise = np.random.default_rng(0).normal(0, 1, (3, 200, 200)).astype(np.float32)
    assert smoothed_to_step(noise, (1.0, 1.2), 1.0) is noise
    fine = smoothed_to_step(noise, (0.5, 0.5), 1.0)  # sigma 1 px each way
    assert 0.25 < fine.std() < 0.35  # white noise through a unit Gaussian: 1 / (2 sqrt(pi)) = 0.28
    assert np.allclose(fine.mean(axis=(1, 2)), noise.mean(axis=(1, 2)), atol=0.01)
    assert np.array_equal(smoothed_to_step(noise, (1.5, 0.5), 1.0)[:, :, 0] != noise[:, :, 0], np.ones((3, 200), bool))


def test_the_slice_is_refined_again_at_the_point_refiners_points(monkeypatch):
    import spinemodels.inference.locate as locate_module
    from spinedata.constants import ROLE_SAG_T2
    from spinedata.geometry import StackGeometry
    from spinemodels.inference.point_refine import RefinedPoints
    from tests.helpers.spinemodels_fakes import SAG_IOP, FakeStack

    size, tilt = 96, 2.0  # the canal's centre moves 0.02 slices per row
    volume = canal_volume(7.0, size=size, tilt=tilt) * 1000
    n = volume.shape[0]
    positions = [(-i * SPACING_MM, 0.0, 0.0) for i in range(n)]
    stack = FakeStack(StackGeometry.from_positions(SAG_IOP, (1.0, 1.0), positions, np.arange(1, n + 1),
                                                   (size, size)), volume)
    rows = np.array([20.0, 28.0, 36.0, 44.0, 52.0])
    points = np.stack([rows, np.full(5, 23.5)], axis=1)
    monkeypatch.setattr(locate_module, "keypoint_points", lambda *a: (points.copy(), np.full(5, 0.9)))

    class FifteenRowsDown:
        def refine(self, volume, positions, found, *args):
            return RefinedPoints(found + [15.0, 0.0], np.full(5, 15.0), [() for _ in range(5)])

    def fit(second_look):
        return locate_module.fit_spinal(stack, "1", 0, ROLE_SAG_T2, None, np.full(5, 7.0), [], "s", False, "cpu", {},
                                        SliceRefineOptions(second_look=second_look), refiner=FifteenRowsDown())

    def centre_at(r):
        return 7.0 + tilt * (r - size / 2) / 100.0

    once, twice = fit(False), fit(True)
    np.testing.assert_allclose(once.points[:, 0], rows + 15.0)  # both moved the points ...
    np.testing.assert_allclose(twice.points[:, 0], rows + 15.0)
    np.testing.assert_allclose(once.positions, centre_at(rows), atol=0.12)  # ... one kept the old slices,
    np.testing.assert_allclose(twice.positions, centre_at(rows + 15.0), atol=0.12)  # one measured them again
    assert all(twice.refined)
