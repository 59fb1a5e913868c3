"""``PhysicalGrid``: the fixed-millimetre grid of stage 1 maps pixel centres both ways, honours non-square
pixels, and shows the same anatomy whatever the matrix a study was written at."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinemodels.data.stackio import PhysicalGrid

spacings = st.floats(0.3, 3.0)
grids = st.builds(PhysicalGrid, rows=st.integers(8, 600), cols=st.integers(8, 600),
                  pixel_spacing=st.tuples(spacings, spacings), size=st.integers(8, 512),
                  fov_mm=st.floats(20.0, 500.0), shift=st.tuples(st.floats(-1, 1), st.floats(-1, 1)))


@settings(max_examples=200, deadline=None)
@given(grid=grids, rc=st.tuples(st.floats(-50, 650), st.floats(-50, 650)))
def test_stack_to_grid_and_back_is_the_identity(grid, rc):
    point = np.array(rc)
    assert np.allclose(grid.to_stack(grid.to_grid(point)), point, atol=1e-7)
    assert np.allclose(grid.to_grid(grid.to_stack(point)), point, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(grid=grids, a=st.tuples(st.floats(0, 600), st.floats(0, 600)), b=st.tuples(st.floats(0, 600), st.floats(0, 600)))
def test_grid_distances_are_millimetres(grid, a, b):
    """A step of (dr, dc) stack pixels is (dr * drow, dc * dcol) mm, i.e. that / mm_per_pixel grid pixels."""
    a, b = np.array(a), np.array(b)
    mm = (b - a) * np.array(grid.pixel_spacing)
    assert np.allclose((grid.to_grid(b) - grid.to_grid(a)) * grid.mm_per_pixel, mm, atol=1e-6)


def test_the_image_centre_is_the_grid_centre():
    grid = PhysicalGrid(rows=300, cols=200, pixel_spacing=(1.2, 0.8), size=64, fov_mm=320.0)
    assert np.allclose(grid.to_grid(np.array([149.5, 99.5])), [31.5, 31.5])


def _disc(rows, cols, spacing, centre_mm, radius_mm):
    """(1, rows, cols) image of a bright disc of ``radius_mm`` at ``centre_mm`` (row, col mm from the
    image centre), sampled at pixel centres with 4x4 supersampling."""
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    r = (np.arange(rows)[:, None] + sub[None, :]).reshape(-1)
    c = (np.arange(cols)[:, None] + sub[None, :]).reshape(-1)
    rr = (r - (rows - 1) / 2) * spacing[0] - centre_mm[0]
    cc = (c - (cols - 1) / 2) * spacing[1] - centre_mm[1]
    inside = (rr[:, None] ** 2 + cc[None, :] ** 2 <= radius_mm**2).astype(np.float32)
    return inside.reshape(rows, 4, cols, 4).mean(axis=(1, 3))[None]


@pytest.mark.parametrize("shape, spacing", [((192, 192), (1.5, 1.5)), ((256, 256), (1.125, 1.125)),
                                            ((384, 384), (0.75, 0.75)), ((512, 512), (0.5625, 0.5625)),
                                            ((300, 240), (0.96, 1.2)), ((200, 320), (1.44, 0.9))])
def test_one_scene_looks_the_same_at_any_matrix_and_pixel_shape(shape, spacing):
    """The same 288 mm scene written at several matrices and (non-square) pixel spacings: on the grid the
    disc lies at the same place, within 0.02 grid pixels, and the images agree closely."""
    centre_mm, radius = (31.0, -47.0), 20.0
    grid = PhysicalGrid(*shape, spacing, size=96, fov_mm=320.0)
    out = grid.apply(_disc(*shape, spacing, centre_mm, radius))[0]
    rows, cols = np.mgrid[:96, :96]
    found = np.array([(out * rows).sum(), (out * cols).sum()]) / out.sum()
    expected = (np.array(centre_mm) / grid.mm_per_pixel) + 47.5
    assert np.allclose(found, expected, atol=0.02)
    reference = PhysicalGrid(576, 576, (0.5, 0.5), 96, 320.0).apply(_disc(576, 576, (0.5, 0.5), centre_mm, radius))[0]
    assert np.abs(out - reference).max() < 0.1
    assert out.sum() * grid.mm_per_pixel**2 == pytest.approx(np.pi * radius**2, rel=0.01)


@pytest.mark.parametrize("shift", [(0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (-0.25, 0.75)])
def test_a_shifted_grid_moves_the_scene_by_the_shift_and_maps_back(shift):
    """The keypoint model's sub-pixel placements: the same disc lands ``shift`` grid pixels further along,
    and ``to_stack`` of the found centre is the same stack point as on the unshifted grid."""
    shape, spacing, centre_mm = (300, 240), (0.96, 1.2), (31.0, -47.0)
    image = _disc(*shape, spacing, centre_mm, 20.0)
    plain = PhysicalGrid(*shape, spacing, size=96, fov_mm=320.0)
    moved = PhysicalGrid(*shape, spacing, size=96, fov_mm=320.0, shift=shift)
    rows, cols = np.mgrid[:96, :96]

    def centre(grid):
        out = grid.apply(image)[0]
        return np.array([(out * rows).sum(), (out * cols).sum()]) / out.sum()

    assert np.allclose(centre(moved) - centre(plain), shift, atol=0.02)
    assert np.allclose(moved.to_stack(centre(moved)), plain.to_stack(centre(plain)), atol=0.03)


def test_outside_the_image_is_zero_and_a_flat_image_stays_flat_inside():
    grid = PhysicalGrid(100, 100, (1.0, 1.0), size=64, fov_mm=200.0)  # the image covers the middle half
    out = grid.apply(np.ones((2, 100, 100), dtype=np.float32))
    assert out.shape == (2, 64, 64)
    assert np.allclose(out[:, 20:44, 20:44], 1.0, atol=1e-6)
    assert (out[:, :14] == 0).all() and (out[:, :, 50:] == 0).all()


def test_bad_grids_are_refused():
    with pytest.raises(ValueError):
        PhysicalGrid(10, 10, (0.0, 1.0), 8, 100.0)
    with pytest.raises(ValueError, match="does not match"):
        PhysicalGrid(10, 10, (1.0, 1.0), 8, 100.0).apply(np.zeros((1, 10, 12)))
    for shift in [(float("nan"), 0.0), (3.0, 0.0), (0.5,)]:
        with pytest.raises(ValueError, match="shift"):
            PhysicalGrid(10, 10, (1.0, 1.0), 8, 100.0, shift)


MATRICES = (192, 256, 384, 512)


@pytest.fixture(scope="module")
def one_study_at_four_matrices(tmp_path_factory):
    """One synthetic study (same seed: same anatomy and field of view) written at four sagittal matrices."""
    import spinedata
    from spinedata.ingest import ingest
    from spinedata.synth import generate

    root = tmp_path_factory.mktemp("matrices")
    stacks = {}
    for matrix in MATRICES:
        generate(root / f"d{matrix}", 1, 5, sagittal_matrices=(matrix,), axial_matrices=(64,), slab_slices=(3, 3))
        ingest(root / f"d{matrix}", root / f"s{matrix}.zarr", workers=1)
        dataset = spinedata.open_dataset(str(root / f"s{matrix}.zarr"))
        study = dataset.study(dataset.study_ids[0])
        (series,) = [s for s in study.series.values() if s.role == "Sagittal T2/STIR"]
        stacks[matrix] = series.stacks[0]
    return stacks


def _shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(row, col) shift of image ``a`` against ``b`` (grid pixels): the peak of their cross-correlation,
    refined with a parabola through its neighbours."""
    a, b = a - a.mean(), b - b.mean()
    corr = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape))
    out = []
    for axis in range(2):
        step = np.eye(2, dtype=int)[axis]
        c0, cm, cp = (corr[tuple((peak + d * step) % corr.shape)] for d in (0, -1, 1))
        wrapped = peak[axis] if peak[axis] <= corr.shape[axis] // 2 else peak[axis] - corr.shape[axis]
        out.append(wrapped + 0.5 * (cm - cp) / (cm - 2 * c0 + cp))
    return np.array(out)


def test_a_study_written_at_four_matrices_looks_the_same_on_the_grid(one_study_at_four_matrices):
    """What the networks see hardly depends on the matrix: every grid pixel is the same place in the
    patient (within 0.05 mm), the images correlate (r > 0.95; the generator's noise and brightness change with
    the pixel size) and lie within 1 mm of each other (cross-correlation shift of the middle slice)."""
    images, worlds = {}, {}
    for matrix, stack in one_study_at_four_matrices.items():
        assert stack.shape[1:] == (matrix, matrix)
        grid = PhysicalGrid.of_stack(stack, size=128, fov_mm=320.0)
        images[matrix] = grid.normalised(stack.read())
        middle = images[matrix].shape[0] // 2
        corners = np.array([[0.0, 0.0], [127.0, 127.0], [40.0, 90.0]])
        worlds[matrix] = np.array([stack.voxel_to_world([middle, *grid.to_stack(rc)]) for rc in corners])
    mm = 320.0 / 128
    for matrix in MATRICES[:-1]:
        assert np.abs(worlds[matrix] - worlds[512]).max() < 0.05
        assert np.corrcoef(images[matrix].ravel(), images[512].ravel())[0, 1] > 0.95
        middle = images[matrix].shape[0] // 2
        assert np.linalg.norm(_shift(images[matrix][middle], images[512][middle])) * mm < 1.0


def test_normalised_is_float32_in_0_1_and_zero_outside_the_image():
    grid = PhysicalGrid(50, 80, (1.0, 2.0), size=64, fov_mm=200.0)
    volume = np.random.default_rng(0).integers(0, 4000, (3, 50, 80)).astype(np.int16)
    out = grid.normalised(volume)
    assert out.dtype == np.float32 and out.shape == (3, 64, 64)
    assert out.min() >= 0 and out.max() <= 1 and out.max() == 1
    assert (out[:, grid.coverage() == 0] == 0).all()
