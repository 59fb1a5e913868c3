"""Percentile scaling of intensities (spinedata.intensity): clipped or not, degenerate stacks."""

from __future__ import annotations

import numpy as np

from spinedata.intensity import percentile_scaled


def test_percentile_scaled_maps_the_percentiles_to_0_and_1():
    rng = np.random.default_rng(3)
    volume = rng.normal(100, 20, size=(4, 30, 30)).astype(np.float32)
    low, high = np.percentile(volume, [1, 99])
    raw = percentile_scaled(volume, clip=False)
    np.testing.assert_allclose(raw, (volume - low) / (high - low), rtol=1e-6)
    assert raw.min() < 0 and raw.max() > 1
    clipped = percentile_scaled(volume, clip=True)
    np.testing.assert_array_equal(clipped, np.clip(raw, 0.0, 1.0))
    assert percentile_scaled(volume, (5.0, 95.0), clip=False).max() > raw.max()


def test_percentile_scaled_gives_zeros_for_a_constant_or_non_finite_stack():
    for volume in (np.full((2, 4, 4), 7, np.uint16), np.full((2, 4, 4), np.nan, np.float32)):
        for clip in (True, False):
            out = percentile_scaled(volume, clip=clip)
            assert out.dtype == np.float32 and out.shape == volume.shape and not out.any()
