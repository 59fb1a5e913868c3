"""mm-normalised crops checked against geometry: dots at known world points under random affines."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage
from scipy.spatial.transform import Rotation

from spinedata.crops import antialias_sigma, bilinear_sample, crop_around
from spinedata.errors import OptionError as ConfigError
from spinedata.geometry import StackGeometry
from spinedata.intensity import normalise, stack_intensity_range

DOT_SIGMA_MM = 1.2


def random_geometry(seed: int, shape=(15, 120, 90), pixel_spacing=(0.55, 0.8), slice_step=3.5):
    """A stack under a random rotation with non-square pixels; slices along n = r x c."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix()
    r, c = rot[:, 0], rot[:, 1]
    n = np.cross(r, c)
    origin = rng.uniform(-80, 80, size=3)
    positions = origin + np.arange(shape[0])[:, None] * slice_step * n
    return StackGeometry.from_positions(
        np.concatenate([r, c]), pixel_spacing, positions, np.arange(1, shape[0] + 1), shape[1:]
    )


def dot_volume(geometry: StackGeometry, points_mm, sigma_mm: float = DOT_SIGMA_MM) -> np.ndarray:
    """Gaussian dots (in mm, 3D) at world points, sampled at every voxel's world position."""
    grid = np.stack(np.meshgrid(*(np.arange(k) for k in geometry.shape), indexing="ij"), axis=-1)
    world = geometry.voxel_to_world(grid.astype(np.float64))
    volume = np.zeros(geometry.shape, dtype=np.float32)
    for point in np.atleast_2d(points_mm):
        volume += np.exp(-np.sum((world - point) ** 2, axis=-1) / (2 * sigma_mm**2)).astype(np.float32)
    return volume


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity centroid ``(row, col)`` of a 2D image."""
    weights = np.clip(image - 0.2 * image.max(), 0, None)
    rows, cols = np.indices(image.shape)
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


def in_plane_point(geometry: StackGeometry, slice_index: int, row: float, col: float) -> np.ndarray:
    return geometry.voxel_to_world(np.array([slice_index, row, col], dtype=np.float64))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dot_lands_at_the_crop_centre(seed):
    geometry = random_geometry(seed)
    rng = np.random.default_rng(seed)
    point = in_plane_point(geometry, 7, rng.uniform(40, 80), rng.uniform(30, 60))
    volume = dot_volume(geometry, point)
    size, side = 48, 30.0
    crop = crop_around(volume, geometry, point, side, 5, size)
    assert crop.shape == (5, size, size) and crop.dtype == np.float32
    assert int(np.argmax(crop.max(axis=(1, 2)))) == 2  # the nearest slice is the centre slice
    np.testing.assert_allclose(centroid(crop[2]), [(size - 1) / 2] * 2, atol=0.25)


def test_point_between_slices_uses_nearest_and_keeps_in_plane_position():
    geometry = random_geometry(5)
    point = in_plane_point(geometry, 6.3, 60.0, 45.0)  # 0.3 slice past slice 6
    crop = crop_around(dot_volume(geometry, point, sigma_mm=2.5), geometry, point, 30.0, 3, 31)
    assert geometry.project(point).slice == 6
    assert int(np.argmax(crop.max(axis=(1, 2)))) == 1
    np.testing.assert_allclose(centroid(crop[1]), [15, 15], atol=0.25)


def test_side_in_mm_is_respected_along_rows_and_columns():
    geometry = random_geometry(6, pixel_spacing=(0.45, 0.9))
    centre = in_plane_point(geometry, 7, 60.0, 45.0)
    row_dir, col_dir = geometry.orientation[3:], geometry.orientation[:3]
    below, right = centre + 20.0 * row_dir, centre + 12.0 * col_dir
    size, side = 64, 50.0
    crop = crop_around(dot_volume(geometry, [below, right]), geometry, centre, side, 1, size)[0]
    px = size / side  # output pixels per mm
    mid = (size - 1) / 2
    lower_half = crop.copy()
    lower_half[: int(mid + 5)] = 0
    right_half = crop.copy()
    right_half[:, : int(mid + 5)] = 0
    np.testing.assert_allclose(centroid(lower_half), [mid + 20 * px, mid], atol=0.3)
    np.testing.assert_allclose(centroid(right_half), [mid, mid + 12 * px], atol=0.3)


def test_rotation_and_scale_move_points_as_expected():
    geometry = random_geometry(7)
    centre = in_plane_point(geometry, 7, 60.0, 45.0)
    below = centre + 10.0 * geometry.orientation[3:]
    volume = dot_volume(geometry, below)
    size, side = 40, 40.0
    rotated = crop_around(volume, geometry, centre, side, 1, size, angle_deg=90.0)[0]
    mid = (size - 1) / 2
    np.testing.assert_allclose(centroid(rotated), [mid, mid + 10.0], atol=0.3)  # below -> right (1 px/mm)
    zoomed_out = crop_around(volume, geometry, centre, side, 1, size, scale=2.0)[0]
    np.testing.assert_allclose(centroid(zoomed_out), [mid + 5.0, mid], atol=0.3)


def test_mirror_flips_columns():
    geometry = random_geometry(8)
    centre = in_plane_point(geometry, 7, 60.0, 45.0)
    right = centre + 8.0 * geometry.orientation[:3]
    volume = dot_volume(geometry, right)
    plain = crop_around(volume, geometry, centre, 32.0, 3, 32)
    mirrored = crop_around(volume, geometry, centre, 32.0, 3, 32, mirror=True)
    np.testing.assert_array_equal(mirrored, plain[:, :, ::-1])
    np.testing.assert_allclose(centroid(mirrored[1]), [15.5, 15.5 - 8.0], atol=0.3)


def test_beyond_the_stack_is_zero_padded_not_shifted():
    geometry = random_geometry(9)
    volume = np.ones(geometry.shape, dtype=np.float32)
    corner = in_plane_point(geometry, 1, 0.0, 0.0)  # second slice, first pixel
    crop = crop_around(volume, geometry, corner, 20.0, 7, 20)
    # slices -2, -1, 0 of the crop lie before the stack: zeros; slices 0..4 of the stack are present
    assert np.all(crop[:2] == 0)
    assert np.all(crop[2:].max(axis=(1, 2)) == 1.0)
    # in plane the point is the top-left pixel: the upper-left quadrant is outside the image
    assert np.all(crop[3, :9, :9] == 0) and np.all(crop[3, 11:, 11:] == 1.0)


def test_point_beyond_the_last_slice_is_padded_not_moved_inside():
    geometry = random_geometry(10)  # 15 slices
    volume = np.ones(geometry.shape, np.float32)
    far = geometry.voxel_to_world(np.array([100.0, 60.0, 45.0]))
    assert not crop_around(volume, geometry, far, 30.0, 5, 16).any()
    near = geometry.voxel_to_world(np.array([15.8, 60.0, 45.0]))  # nearest slice index 16: beyond the stack
    crop = crop_around(volume, geometry, near, 30.0, 5, 16)
    assert crop.max(axis=(1, 2)).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]  # only slice 14 is in the crop


class RecordingVolume:
    """A lazy array that records which blocks are read."""

    def __init__(self, data: np.ndarray):
        self.data, self.shape, self.reads = data, data.shape, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


def test_reads_only_the_needed_block_and_accepts_xarray():
    geometry = random_geometry(11)
    point = in_plane_point(geometry, 7, 60.0, 45.0)
    data = dot_volume(geometry, point)
    lazy = RecordingVolume(data)
    crop = crop_around(lazy, geometry, point, 20.0, 5, 24)
    (key,) = lazy.reads
    assert (key[0].start, key[0].stop) == (5, 10)
    assert key[1].stop - key[1].start < 60 and key[2].stop - key[2].start < 40
    as_xarray = xr.DataArray(data, dims=("slice", "row", "col"))
    np.testing.assert_array_equal(crop_around(as_xarray, geometry, point, 20.0, 5, 24), crop)


def test_intensity_normalisation():
    rng = np.random.default_rng(12)
    volume = rng.normal(100, 20, size=(6, 50, 50)).astype(np.float32)
    low, high = stack_intensity_range(volume)
    np.testing.assert_allclose([low, high], np.percentile(volume, [1, 99]), rtol=1e-6)
    scaled = normalise(volume, (low, high))
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert np.mean(scaled == 0.0) == pytest.approx(0.01, abs=0.002)
    assert stack_intensity_range(np.full((2, 4, 4), 7.0)) == (7.0, 8.0)
    geometry = random_geometry(12, shape=(6, 50, 50))
    point = in_plane_point(geometry, 3, 25.0, 25.0)
    crop = crop_around(volume, geometry, point, 10.0, 3, 8, intensity_range=(low, high))
    assert crop.min() >= 0.0 and crop.max() <= 1.0


def test_downsampling_is_antialiased():
    assert antialias_sigma(50.0, 224, (0.5, 0.5)) == (0.0, 0.0)  # upsampling: no blur
    s_row, s_col = antialias_sigma(50.0, 25, (0.5, 1.0))  # 2 mm output pixels
    assert s_row == pytest.approx(1.5) and s_col == pytest.approx(0.5)
    geometry = random_geometry(13, shape=(3, 200, 200), pixel_spacing=(0.5, 0.5))
    stripes = np.zeros(geometry.shape, np.float32)
    stripes[:, :, ::2] = 1.0  # 1-px stripes (Nyquist) alias without a prefilter
    crop = crop_around(stripes, geometry, in_plane_point(geometry, 1, 100, 100), 50.0, 1, 25)
    assert crop[0].std() < 0.02 and crop[0].mean() == pytest.approx(0.5, abs=0.03)


def test_jitter_is_bounded_reproducible_and_needs_an_rng():
    geometry = random_geometry(14)
    point = in_plane_point(geometry, 7, 60.0, 45.0)
    volume = dot_volume(geometry, point)
    size, side = 40, 40.0
    with pytest.raises(ConfigError, match="Generator"):
        crop_around(volume, geometry, point, side, 5, size, jitter_mm=3.0)
    first = crop_around(volume, geometry, point, side, 5, size, jitter_mm=3.0, jitter_slices=1,
                        rng=np.random.default_rng(1))
    again = crop_around(volume, geometry, point, side, 5, size, jitter_mm=3.0, jitter_slices=1,
                        rng=np.random.default_rng(1))
    np.testing.assert_array_equal(first, again)
    rng = np.random.default_rng(2)
    offsets, slice_moves = [], set()
    for _ in range(20):
        crop = crop_around(volume, geometry, point, side, 5, size, jitter_mm=3.0, jitter_slices=1, rng=rng)
        peak = int(np.argmax(crop.max(axis=(1, 2))))
        slice_moves.add(peak - 2)
        offsets.append(centroid(crop[peak]) - (size - 1) / 2)
    offsets = np.abs(np.array(offsets))
    assert offsets.max() <= 3.0 + 0.3 and offsets.max() > 1.0  # 1 px per mm here
    assert slice_moves == {-1, 0, 1}


@pytest.mark.parametrize(
    "kwargs",
    [dict(side_mm=0.0), dict(n_slices=0), dict(size=0), dict(jitter_mm=-1.0, rng=np.random.default_rng()),
     dict(scale=0.0)],
)
def test_invalid_parameters(kwargs):
    geometry = random_geometry(15)
    args = dict(side_mm=30.0, n_slices=3, size=16) | kwargs
    with pytest.raises(ConfigError):
        crop_around(np.zeros(geometry.shape, np.float32), geometry, geometry.positions[0], **args)


def test_nonuniform_stack_follows_real_slice_positions():
    base = random_geometry(16)
    n = base.normal
    depths = np.array([0.0, 3.0, 6.0, 11.0, 14.0, 17.0, 20.0])  # one 5 mm gap
    positions = base.positions[0] + depths[:, None] * n
    geometry = StackGeometry.from_positions(base.orientation, base.pixel_spacing, positions,
                                            np.arange(1, 8), base.shape[1:])
    assert "nonuniform" in geometry.flags
    point = positions[3] + 50.0 * geometry.affine[:3, 1] + 40.0 * geometry.affine[:3, 2] + 0.4 * n
    crop = crop_around(dot_volume(geometry, point), geometry, point, 30.0, 3, 31)
    assert int(np.argmax(crop.max(axis=(1, 2)))) == 1  # slice 3 in the middle
    np.testing.assert_allclose(centroid(crop[1]), [15, 15], atol=0.25)


def test_bilinear_sample_matches_scipy_map_coordinates():
    rng = np.random.default_rng(17)
    block = rng.random((3, 20, 30)).astype(np.float32)
    rows, cols = rng.uniform(-3, 23, size=(2, 40, 50))  # includes points beyond every edge
    got = bilinear_sample(block, rows, cols)
    want = np.stack([ndimage.map_coordinates(b, [rows, cols], order=1, mode="grid-constant", cval=0.0)
                     for b in block])
    np.testing.assert_allclose(got, want, atol=1e-6)
