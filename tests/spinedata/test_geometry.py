"""Unit and property tests of spinedata.geometry (pure NumPy, fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinedata.errors import GeometryError
from spinedata.geometry import (
    FLAG_DEFAULT_SPACING,
    FLAG_MISSING_SLICES,
    FLAG_NONUNIFORM,
    FLAG_SHEAR,
    FLAG_SINGLE_SLICE,
    StackGeometry,
    affine_from_positions,
    apply_affine,
    base_gap,
    classify_gaps,
    lps_to_ras,
    normalise_orientation,
)

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # columns run posterior, rows run to the feet: n = -x (right)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # n = +z (head)


def _rotation(quaternion) -> np.ndarray:
    q = np.asarray(quaternion, dtype=np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


quaternions = st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(lambda q: np.linalg.norm(q) > 0.3)
spacings = st.floats(0.2, 2.0)
origins = st.tuples(*[st.floats(-200, 200) for _ in range(3)])


def _stack(quaternion, drow, dcol, step, n, origin, rows=20, cols=30) -> StackGeometry:
    rot = _rotation(quaternion)
    iop = np.concatenate([rot[:, 0], rot[:, 1]])
    normal = np.cross(rot[:, 0], rot[:, 1])
    positions = np.asarray(origin) + np.arange(n)[:, None] * step * normal
    return StackGeometry.from_positions(iop, (drow, dcol), positions, np.arange(1, n + 1), (rows, cols))


def test_affine_columns_follow_design():
    positions = np.array([[10.0, -5.0, 3.0], [7.0, -5.0, 3.0], [4.0, -5.0, 3.0]])
    affine = affine_from_positions(SAGITTAL, (0.5, 0.8), positions)
    np.testing.assert_allclose(affine[:3, 0], [-3.0, 0.0, 0.0])  # step from positions
    np.testing.assert_allclose(affine[:3, 1], [0.0, 0.0, -0.5])  # drow * c: rows go to the feet
    np.testing.assert_allclose(affine[:3, 2], [0.0, 0.8, 0.0])  # dcol * r: columns go posterior
    np.testing.assert_allclose(affine[:3, 3], positions[0])
    # a Kaggle label (x=col, y=row) on slice 2: world = IPP + x*dcol*r + y*drow*c
    np.testing.assert_allclose(apply_affine(affine, [2, 10, 4]), positions[2] + [0, 4 * 0.8, -10 * 0.5])


def test_one_slice_needs_explicit_spacing():
    with pytest.raises(GeometryError, match="one-slice"):
        affine_from_positions(AXIAL, (1, 1), [[0, 0, 0]])
    affine = affine_from_positions(AXIAL, (1, 1), [[0, 0, 0]], single_slice_spacing=4.0)
    np.testing.assert_allclose(affine[:3, 0], [0, 0, 4.0])


def test_lps_to_ras_flips_x_and_y():
    affine = affine_from_positions(AXIAL, (1.0, 2.0), [[1, 2, 3], [1, 2, 5]])
    ras = lps_to_ras(affine)
    np.testing.assert_allclose(ras[:3, 3], [-1, -2, 3])
    np.testing.assert_allclose(ras[:3, 2], [-2, 0, 0])
    np.testing.assert_allclose(ras[:3, 0], [0, 0, 2])


@pytest.mark.parametrize(
    "iop, match",
    [
        ((1, 0, 0, 0.1, 1, 0), "not orthogonal"),
        ((2, 0, 0, 0, 1, 0), "unit length"),
        ((1, 0, 0, 0, 0, 0), "unit length"),
        ((1, 0, 0, 0, 1), "6 finite"),
        ((1, 0, 0, 0, float("nan"), 0), "6 finite"),
    ],
)
def test_bad_orientation_is_rejected(iop, match):
    with pytest.raises(GeometryError, match=match):
        normalise_orientation(iop)


def test_orientation_is_normalised():
    iop = normalise_orientation((1.0001, 0, 0, 0, 0.9999, 0))
    np.testing.assert_allclose(np.linalg.norm(iop[:3]), 1.0)
    np.testing.assert_allclose(np.linalg.norm(iop[3:]), 1.0)


def test_from_positions_sorts_along_normal_not_instance_number():
    positions = np.array([[0, 0, 6.0], [0, 0, 0.0], [0, 0, 3.0]])
    geometry = StackGeometry.from_positions(AXIAL, (1, 1), positions, [9, 1, 5], (4, 4))
    np.testing.assert_allclose(geometry.positions[:, 2], [0, 3, 6])
    np.testing.assert_array_equal(geometry.instance_numbers, [1, 5, 9])
    assert geometry.uniform and geometry.flags == ()
    assert geometry.slice_spacing == pytest.approx(3.0)


def test_missing_slice_is_flagged_and_positions_are_kept():
    z = np.array([0, 3, 6, 12, 15.0])  # slice at 9 missing
    positions = np.stack([np.zeros(5), np.zeros(5), z], axis=1)
    geometry = StackGeometry.from_positions(AXIAL, (1, 1), positions, range(5), (8, 8))
    assert not geometry.uniform
    assert FLAG_NONUNIFORM in geometry.flags and FLAG_MISSING_SLICES in geometry.flags
    np.testing.assert_allclose(geometry.voxel_to_world([[3, 0, 0]]), [[0, 0, 12]])
    np.testing.assert_allclose(geometry.world_to_voxel([0, 0, 9.0]), [2.5, 0, 0])
    projection = geometry.project([1.0, 2.0, 11.0])
    assert (projection.slice, projection.distance_mm) == (3, pytest.approx(-1.0))
    assert (projection.row, projection.col) == (pytest.approx(2.0), pytest.approx(1.0))


def test_shear_keeps_true_step():
    tilt = np.tan(np.deg2rad(10))
    positions = np.array([[0, k * 2.0 * tilt, k * 2.0] for k in range(6)])
    geometry = StackGeometry.from_positions(AXIAL, (0.5, 0.5), positions, range(6), (8, 8))
    assert FLAG_SHEAR in geometry.flags and geometry.uniform
    np.testing.assert_allclose(geometry.affine[:3, 0], [0, 2 * tilt, 2.0])
    np.testing.assert_allclose(geometry.voxel_to_world([5, 0, 0]), positions[5])


def test_single_slice_flags():
    one = StackGeometry.from_positions(AXIAL, (1, 1), [[0, 0, 0]], [1], (4, 4), single_slice_spacing=5.0)
    assert one.flags == (FLAG_SINGLE_SLICE,) and one.slice_spacing == 5.0
    default = StackGeometry.from_positions(AXIAL, (1, 1), [[0, 0, 0]], [1], (4, 4))
    assert default.flags == (FLAG_SINGLE_SLICE, FLAG_DEFAULT_SPACING) and default.slice_spacing == 1.0
    assert default.project([0, 0, 0.4]).inside and not default.project([0, 0, 0.6]).inside


def test_repeated_positions_are_rejected():
    with pytest.raises(GeometryError, match="strictly increasing"):
        StackGeometry.from_positions(AXIAL, (1, 1), [[0, 0, 0], [0, 0, 0]], [1, 2], (4, 4))


def test_attrs_round_trip_through_json():
    positions = np.array([[0, 0, 0], [0, 0, 2.0], [0, 0, 5.0]])
    geometry = StackGeometry.from_positions(AXIAL, (0.5, 0.7), positions, [3, 4, 5], (6, 7))
    attrs = json.loads(json.dumps(geometry.to_attrs()))
    back = StackGeometry.from_attrs(attrs, geometry.positions, geometry.instance_numbers)
    np.testing.assert_array_equal(back.affine, geometry.affine)
    assert back.shape == (3, 6, 7) and back.flags == geometry.flags and back.uniform is False
    assert back.pixel_spacing == (0.5, 0.7)
    with pytest.raises(GeometryError, match="lack"):
        StackGeometry.from_attrs({"affine": attrs["affine"]}, positions, [3, 4, 5])


def test_projection_inside_bounds():
    geometry = StackGeometry.from_positions(AXIAL, (1, 1), [[0, 0, 0], [0, 0, 2]], [1, 2], (10, 20))
    assert geometry.project([19.4, 9.4, 2.9]).inside
    assert not geometry.project([19.6, 0, 0]).inside  # past the last column
    assert not geometry.project([0, 9.6, 0]).inside  # past the last row
    assert not geometry.project([0, 0, 3.1]).inside  # more than half a step past the slab
    assert not geometry.project([0, 0, -1.1]).inside


@settings(max_examples=40, deadline=None)
@given(quaternions, spacings, spacings, st.floats(0.5, 8.0), st.integers(1, 12), origins)
def test_voxel_world_round_trip(quaternion, drow, dcol, step, n, origin):
    geometry = _stack(quaternion, drow, dcol, step, n, origin)
    rng = np.random.default_rng(0)
    ijk = rng.uniform(-2, 1, size=(16, 3)) * np.array(geometry.shape)
    np.testing.assert_allclose(geometry.world_to_voxel(geometry.voxel_to_world(ijk)), ijk, atol=1e-8)
    xyz = rng.uniform(-300, 300, size=(16, 3))
    np.testing.assert_allclose(geometry.voxel_to_world(geometry.world_to_voxel(xyz)), xyz, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(quaternions, spacings, spacings, st.floats(0.5, 8.0), st.integers(2, 12), origins, st.data())
def test_nonuniform_round_trip_and_projection(quaternion, drow, dcol, step, n, origin, data):
    rot = _rotation(quaternion)
    iop = np.concatenate([rot[:, 0], rot[:, 1]])
    gaps = data.draw(st.lists(st.floats(0.3, 3.0), min_size=n - 1, max_size=n - 1))
    depth = np.concatenate([[0.0], np.cumsum(np.asarray(gaps) * step)])
    positions = np.asarray(origin) + depth[:, None] * np.cross(rot[:, 0], rot[:, 1])
    geometry = StackGeometry.from_positions(iop, (drow, dcol), positions, range(n), (20, 30))
    ijk = np.random.default_rng(1).uniform(-2, 1, size=(16, 3)) * np.array(geometry.shape)
    np.testing.assert_allclose(geometry.world_to_voxel(geometry.voxel_to_world(ijk)), ijk, atol=1e-7)
    k = data.draw(st.integers(0, n - 1))
    np.testing.assert_allclose(geometry.voxel_to_world([k, 0, 0]), positions[k], atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(quaternions, spacings, spacings, st.floats(0.5, 8.0), st.integers(1, 12), origins, st.data())
def test_projection_of_voxel_centre_is_that_voxel(quaternion, drow, dcol, step, n, origin, data):
    geometry = _stack(quaternion, drow, dcol, step, n, origin)
    k = data.draw(st.integers(0, n - 1))
    row = data.draw(st.integers(0, geometry.shape[1] - 1))
    col = data.draw(st.integers(0, geometry.shape[2] - 1))
    projection = geometry.project(geometry.voxel_to_world([k, row, col]))
    assert projection.slice == k and projection.inside
    assert projection.row == pytest.approx(row, abs=1e-6)
    assert projection.col == pytest.approx(col, abs=1e-6)
    assert projection.distance_mm == pytest.approx(0.0, abs=1e-6)
    # moving along n by a third of a step keeps the slice and reports the signed distance
    moved = geometry.project(geometry.voxel_to_world([k, row, col]) + geometry.normal * step / 3)
    assert moved.slice == k and moved.distance_mm == pytest.approx(step / 3, abs=1e-6)


@pytest.mark.parametrize(
    "gaps, step, missing, jump",
    [
        ([3, 3, 6, 3], 3.0, [0, 0, 1, 0], [0, 0, 0, 0]),  # one slice missing
        ([1, 2], 1.0, [0, 1], [0, 0]),  # too few gaps for a median: the smallest is the step
        ([3, 3, 12, 3], 3.0, [0, 0, 1, 0], [0, 0, 0, 0]),  # three missing in a row: still bridged
        ([3, 3, 15, 3], 3.0, [0, 0, 0, 0], [0, 0, 1, 0]),  # four missing (> MAX_MISSING_RUN): a jump
        ([3, 3.3, 3, 4], 3.15, [0, 0, 0, 0], [0, 0, 0, 0]),  # irregular but no jump: the median
        ([3, 3, 47, 3], 3.0, [0, 0, 0, 0], [0, 0, 1, 0]),  # a distant slab
    ],
)
def test_gap_classification(gaps, step, missing, jump):
    assert base_gap(gaps) == pytest.approx(step)
    found_missing, found_jump = classify_gaps(np.asarray(gaps, dtype=float), base_gap(gaps))
    assert found_missing.tolist() == [bool(v) for v in missing]
    assert found_jump.tolist() == [bool(v) for v in jump]
