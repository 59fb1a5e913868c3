"""build_stacks: grouping, sorting, splitting and flags, on in-memory headers and on the real test data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinedata.dicom import SliceHeader, read_header
from spinedata.geometry import FLAG_DEFAULT_SPACING, FLAG_SHEAR, FLAG_SINGLE_SLICE
from spinedata.report import Skipped
from spinedata.stacks import build_stacks
from tests.helpers.testdata import dicom_case

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _rotation(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _header(
    position, orientation=AXIAL, *, instance=1, series="s", spacing=(0.5, 0.8), rows=8, cols=10, **kw
):
    fields = dict(
        path=f"/x/{series}/{instance}_{kw.get('echo_number')}_{kw.get('acquisition_number')}.dcm",
        study_uid="st",
        series_uid=series,
        sop_uid=f"{series}.{instance}.{kw.get('echo_number')}.{kw.get('acquisition_number')}",
        series_description="d",
        instance_number=instance,
        position=tuple(float(v) for v in position),
        orientation=tuple(float(v) for v in orientation),
        pixel_spacing=spacing,
        rows=rows,
        cols=cols,
        slice_thickness=None,
        spacing_between_slices=None,
        echo_number=None,
        acquisition_number=None,
        temporal_position=None,
        rescale_slope=1.0,
        rescale_intercept=0.0,
        transfer_syntax="1.2.840.10008.1.2.1",
    )
    fields.update(kw)
    return SliceHeader(**fields)


def _series(rot, step, n, origin=(0.0, 0.0, 0.0), *, first_instance=1, **kw) -> list[SliceHeader]:
    iop = np.concatenate([rot[:, 0], rot[:, 1]])
    normal = np.cross(rot[:, 0], rot[:, 1])
    return [
        _header(np.asarray(origin) + k * step * normal, iop, instance=first_instance + k, **kw)
        for k in range(n)
    ]


quaternions = st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(lambda q: np.linalg.norm(q) > 0.3)


@settings(max_examples=40, deadline=None)
@given(
    quaternions,
    st.tuples(st.floats(0.2, 2.0), st.floats(0.2, 2.0)),
    st.floats(0.5, 8.0),
    st.integers(1, 15),
    st.randoms(use_true_random=False),
)
def test_any_file_order_gives_the_same_stack(q, spacing, step, n, random):
    rot = _rotation(q)
    headers = _series(rot, step, n, origin=(10.0, -20.0, 30.0), spacing=spacing, slice_thickness=2.0)
    shuffled = list(headers)
    random.shuffle(shuffled)
    (stack_a, piece_a), *rest_a = build_stacks(headers)[0]
    (stack_b, piece_b), *rest_b = build_stacks(shuffled)[0]
    assert rest_a == rest_b == []
    assert (
        [h.instance_number for h in piece_a] == [h.instance_number for h in piece_b] == list(range(1, n + 1))
    )
    np.testing.assert_array_equal(stack_a.affine, stack_b.affine)
    normal = np.cross(rot[:, 0], rot[:, 1])
    expected = np.eye(4)
    expected[:3, 0] = (step if n > 1 else 2.0) * normal
    expected[:3, 1] = spacing[0] * rot[:, 1]
    expected[:3, 2] = spacing[1] * rot[:, 0]
    expected[:3, 3] = (10.0, -20.0, 30.0)
    np.testing.assert_allclose(stack_a.affine, expected, atol=1e-9)
    assert stack_a.uniform and stack_a.shape == (n, 8, 10)
    assert stack_a.flags == (() if n > 1 else (FLAG_SINGLE_SLICE,))


@settings(max_examples=30, deadline=None)
@given(quaternions, st.integers(2, 10), st.integers(2, 4), st.booleans(), st.randoms(use_true_random=False))
def test_repeated_positions_split_into_volumes(q, n, volumes, with_echo, random):
    """Several volumes at the same positions come apart, by EchoNumbers if present, else by file order."""
    rot = _rotation(q)
    headers = []
    for v in range(volumes):
        echo = {"echo_number": v + 1} if with_echo else {}
        headers += _series(rot, 3.0, n, first_instance=1 + v * n, **echo)
    random.shuffle(headers)
    stacks, skipped = build_stacks(headers)
    assert skipped == [] and len(stacks) == volumes
    for v, (geometry, piece) in enumerate(stacks):
        assert geometry.shape[0] == n and geometry.uniform
        assert [h.instance_number for h in piece] == list(range(1 + v * n, 1 + (v + 1) * n))
        np.testing.assert_allclose(geometry.slice_spacing, 3.0)


def test_volume_key_is_only_used_when_positions_repeat():
    """AcquisitionNumber changing inside one volume (as in dicom2nifti/failing/sliceincrement) keeps it whole."""
    headers = [
        dataclasses.replace(h, acquisition_number=1 + k // 2)
        for k, h in enumerate(_series(np.eye(3), 2.0, 6))
    ]
    stacks, _ = build_stacks(headers)
    assert [g.shape[0] for g, _ in stacks] == [6]


def test_echo_and_acquisition_choose_the_fewest_volumes():
    headers = []
    for echo in (1, 2):
        for k, h in enumerate(_series(np.eye(3), 2.0, 4, first_instance=10 * echo)):
            headers.append(dataclasses.replace(h, echo_number=echo, acquisition_number=k))
    stacks, _ = build_stacks(headers)
    assert [[h.echo_number for h in piece] for _, piece in stacks] == [[1] * 4, [2] * 4]


def test_image_type_splits_dixon_images_at_the_same_positions():
    """Water and fat images of one Dixon series at the same positions, without echo or acquisition numbers,
    and instance numbers that put water first at some positions and fat first at others (so file order
    alone would mix them): ImageType tells the two volumes apart."""
    headers = []
    for k, h in enumerate(_series(np.eye(3), 2.0, 6)):
        water_first = k % 2 == 0
        for kind, instance in (("W", 2 * k + (0 if water_first else 1)), ("F", 2 * k + (1 if water_first else 0))):
            headers.append(dataclasses.replace(h, instance_number=instance, image_type=f"DERIVED\\PRIMARY\\DIXON\\{kind}",
                                               path=f"/x/{kind}{k}.dcm", sop_uid=f"{kind}.{k}"))  # fmt: skip
    stacks, skipped = build_stacks(headers)
    assert skipped == [] and len(stacks) == 2
    kinds = [{h.image_type[-1] for h in piece} for _, piece in stacks]
    assert sorted(map(sorted, kinds)) == [["F"], ["W"]]
    assert all(g.shape[0] == 6 and g.uniform for g, _ in stacks)


def test_parallel_slabs_at_distant_positions_split():
    rot = np.eye(3)
    slab_a = _series(rot, 4.0, 5, origin=(0, 0, 0), first_instance=1)
    slab_b = _series(rot, 4.0, 5, origin=(0, 0, 47.0), first_instance=6)
    stacks, _ = build_stacks(slab_b + slab_a)
    assert [[h.instance_number for h in piece] for _, piece in stacks] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert all(g.uniform and g.flags == () for g, _ in stacks)


def test_in_plane_offset_jump_splits():
    """Two slabs continuing each other along n but shifted in plane are two stacks."""
    slab_a = _series(np.eye(3), 4.0, 4, origin=(0, 0, 0), first_instance=1)
    slab_b = _series(np.eye(3), 4.0, 4, origin=(15.0, 0, 16.0), first_instance=5)
    stacks, _ = build_stacks(slab_a + slab_b)
    assert [g.shape[0] for g, _ in stacks] == [4, 4]


def test_angled_slabs_group_apart():
    """An axial series with one slab per disc, each angled differently."""
    headers = []
    for k, tilt in enumerate((-12.0, 0.0, 9.0)):
        t = np.deg2rad(tilt)
        rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
        headers += _series(rot, 4.0, 5, origin=(0, 0, 40.0 * k), first_instance=1 + 5 * k)
    stacks, skipped = build_stacks(headers[::-1])
    assert skipped == [] and [int(g.instance_numbers[0]) for g, _ in stacks] == [1, 6, 11]
    assert all(g.shape[0] == 5 and g.flags == () for g, _ in stacks)


def test_missing_slices_are_bridged_and_flagged():
    headers = [h for h in _series(np.eye(3), 3.0, 8) if h.instance_number not in (4, 5)]
    (geometry, piece), *rest = build_stacks(headers)[0]
    assert rest == [] and geometry.shape[0] == 6
    assert geometry.flags == ("nonuniform", "missing_slices")
    np.testing.assert_allclose(geometry.positions[3], [0, 0, 15.0])  # every slice's own position kept


def test_matrix_and_spacing_separate_stacks_and_series_never_mix():
    base = _series(np.eye(3), 3.0, 3)
    other_matrix = _series(np.eye(3), 3.0, 3, rows=16, first_instance=4)
    other_spacing = _series(np.eye(3), 3.0, 3, spacing=(0.6, 0.8), first_instance=7)
    other_series = _series(np.eye(3), 3.0, 3, series="t", first_instance=10)
    stacks, _ = build_stacks(other_series + other_spacing + base + other_matrix)
    assert [(piece[0].series_uid, g.shape[0]) for g, piece in stacks] == [("s", 3)] * 3 + [("t", 3)]


def test_headers_without_geometry_are_skipped_with_reasons():
    good = _series(np.eye(3), 3.0, 3)
    bad = [
        dataclasses.replace(good[0], path="/x/no_ipp", position=None),
        dataclasses.replace(good[0], path="/x/no_iop", orientation=None),
        dataclasses.replace(good[0], path="/x/no_ps", pixel_spacing=None),
        dataclasses.replace(good[0], path="/x/skew", orientation=(1, 0, 0, 0.1, 0.995, 0)),
        dataclasses.replace(good[0], path="/x/nan", position=(0.0, float("nan"), 0.0)),
        dataclasses.replace(good[0], path="/x/far", position=(-1e300, 0.0, 0.0), sop_uid="far"),
        dataclasses.replace(good[0], path="/x/tiny", pixel_spacing=(1e-300, 1.0), sop_uid="tiny"),
        dataclasses.replace(good[0], path="/x/huge", pixel_spacing=(1e300, 1e300), sop_uid="huge"),
    ]
    stacks, skipped = build_stacks(good + bad)
    assert [g.shape[0] for g, _ in stacks] == [3]
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["/x/far"].startswith("implausible ImagePositionPatient")
    assert reasons["/x/tiny"].startswith("implausible PixelSpacing")
    assert reasons["/x/huge"].startswith("implausible PixelSpacing")
    assert reasons["/x/no_ipp"] == "no ImagePositionPatient"
    assert reasons["/x/no_iop"] == "no ImageOrientationPatient"
    assert reasons["/x/no_ps"] == "no PixelSpacing"
    assert "not orthogonal" in reasons["/x/skew"]
    assert "non-finite" in reasons["/x/nan"]
    assert all(isinstance(s, Skipped) and s.series_id == "s" for s in skipped)


def test_duplicate_files_are_skipped_not_stacked_twice():
    headers = _series(np.eye(3), 3.0, 4)
    copy = dataclasses.replace(headers[2], path="/y/copy.dcm")
    stacks, skipped = build_stacks([copy, *headers])
    assert [g.shape[0] for g, _ in stacks] == [4]
    assert skipped == [
        Skipped(
            path="/y/copy.dcm", reason=f"duplicate of {headers[2].path} (same SOPInstanceUID)", series_id="s"
        )
    ]


def test_single_slice_spacing_sources():
    one = _header((0, 0, 0), spacing_between_slices=4.0, slice_thickness=3.0)
    assert build_stacks([one])[0][0][0].slice_spacing == 4.0
    one = dataclasses.replace(one, spacing_between_slices=None)
    assert build_stacks([one])[0][0][0].slice_spacing == 3.0
    one = dataclasses.replace(one, slice_thickness=None)
    geometry = build_stacks([one])[0][0][0]
    assert geometry.slice_spacing == 1.0 and geometry.flags == (FLAG_SINGLE_SLICE, FLAG_DEFAULT_SPACING)


def test_same_depth_different_place_is_its_own_stack():
    """Two slices at one depth but far apart in plane (e.g. a localizer among a stack): never mixed."""
    headers = [_header((0, 0, 0), instance=1), _header((50, 0, 0), instance=2)]
    headers += [_header((0, 0, 3), instance=3), _header((0, 0, 6), instance=4)]
    stacks, skipped = build_stacks(headers)
    assert skipped == []
    assert [[h.instance_number for h in piece] for _, piece in stacks] == [[1, 3, 4], [2]]
    assert stacks[0][0].flags == () and stacks[1][0].flags == (FLAG_SINGLE_SLICE, FLAG_DEFAULT_SPACING)


def test_interleaved_parallel_slabs_come_apart():
    slab_a = [_header((0, 0, z), instance=1 + k) for k, z in enumerate((0, 3, 6, 9))]
    slab_b = [_header((20, 0, z + 1.5), instance=11 + k) for k, z in enumerate((0, 3, 6, 9))]
    stacks, _ = build_stacks(slab_a + slab_b)
    assert [[h.instance_number for h in piece] for _, piece in stacks] == [[1, 2, 3, 4], [11, 12, 13, 14]]
    assert all(g.flags == () and g.slice_spacing == pytest.approx(3.0) for g, _ in stacks)


@settings(max_examples=30, deadline=None)
@given(
    quaternions,
    st.floats(0.5, 5.0),
    st.integers(4, 12),
    st.floats(-0.5, 0.5),
    st.floats(-0.5, 0.5),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_sheared_stack_stays_whole_with_true_step(q, step, n, tilt_r, tilt_c, drop, random):
    """Gantry tilt: each slice drifts in plane by a constant amount; with or without a missing slice."""
    rot = _rotation(q)
    r, c = rot[:, 0], rot[:, 1]
    normal = np.cross(r, c)
    drift = step * (tilt_r * r + tilt_c * c)
    keep = [k for k in range(n) if not (drop and k == n // 2)]
    iop = np.concatenate([r, c])
    headers = [_header(k * (step * normal + drift), iop, instance=k + 1) for k in keep]
    random.shuffle(headers)
    stacks, skipped = build_stacks(headers)
    assert skipped == [] and len(stacks) == 1
    geometry, piece = stacks[0]
    assert [h.instance_number for h in piece] == [k + 1 for k in keep]
    mean_step = (keep[-1] - keep[0]) / (len(keep) - 1) * (step * normal + drift)  # first-to-last / (N-1)
    np.testing.assert_allclose(geometry.affine[:3, 0], mean_step, atol=1e-9)
    np.testing.assert_allclose(geometry.positions, [k * (step * normal + drift) for k in keep], atol=1e-9)
    sheared = np.linalg.norm(drift) > 1e-3 * np.linalg.norm(step * normal + drift)
    assert (FLAG_SHEAR in geometry.flags) == sheared
    assert ("missing_slices" in geometry.flags) == drop


# ------------------------------------------------------------------ the real "failing" cases of dicom2nifti
FAILING = {
    # case: (slices per stack, flags per stack)
    "gantrytilting/001": ([4], [(FLAG_SHEAR,)]),
    "notavolume/001": ([1, 1, 1, 1], [(FLAG_SINGLE_SLICE, FLAG_DEFAULT_SPACING)] * 4),
    "slicecount/001": ([2], [()]),
    "sliceincrement/001": ([4], [("nonuniform", "missing_slices")]),
    "sliceincrement/002": ([4], [("nonuniform", "missing_slices", FLAG_SHEAR)]),
    "sliceorientation/001": ([2, 2], [(), ()]),
}


@pytest.mark.testdata
@pytest.mark.parametrize("case", sorted(FAILING))
def test_dicom2nifti_failing_cases_give_clear_results(testdata_dir, case):
    folder = dicom_case(testdata_dir, f"dicom2nifti/failing/{case}")
    headers = [read_header(p) for p in sorted(folder.iterdir())]
    stacks, skipped = build_stacks(headers)
    counts, flags = FAILING[case]
    assert skipped == []
    assert [g.shape[0] for g, _ in stacks] == counts
    assert [g.flags for g, _ in stacks] == flags


@pytest.mark.testdata
def test_gantry_tilt_keeps_the_true_step(testdata_dir):
    folder = dicom_case(testdata_dir, "dicom2nifti/failing/gantrytilting/001")
    (geometry, piece), *_ = build_stacks([read_header(p) for p in folder.iterdir()])[0]
    np.testing.assert_allclose(geometry.affine[:3, 0], np.subtract(piece[1].position, piece[0].position))
    np.testing.assert_allclose(geometry.affine[:3, 0], [0, 0, 5.0], atol=1e-6)  # the table moved along z
    assert not np.allclose(np.cross(geometry.affine[:3, 0], geometry.normal), 0, atol=1e-3)


@pytest.mark.testdata
def test_missing_slice_positions_stay_true(testdata_dir):
    """sliceincrement/001 lacks the slice at z = 33.1: the stack keeps each slice where it was acquired."""
    folder = dicom_case(testdata_dir, "dicom2nifti/failing/sliceincrement/001")
    (geometry, _), *_ = build_stacks([read_header(p) for p in folder.iterdir()])[0]
    np.testing.assert_allclose(geometry.positions[:, 2], [18.1075, 23.1075, 28.107498, 38.107498])
    np.testing.assert_allclose(geometry.voxel_to_world([3, 0, 0]), geometry.positions[3])
    assert geometry.project(geometry.positions[3] + [0, 0, 0.4]).slice == 3


def test_a_slice_of_another_pixel_format_is_never_merged_into_a_stack():
    """A file with BitsAllocated 1 (or another sign or photometric) in a 16-bit series is split off into a
    stack of its own, never merged with 0/1 values among the 16-bit ones."""
    headers = _series(np.eye(3), 3.0, 5)
    odd = dataclasses.replace(headers[2], bits_allocated=1, bits_stored=1)
    signed = dataclasses.replace(headers[4], pixel_representation=1)
    stacks, skipped = build_stacks([*headers[:2], odd, headers[3], signed])
    assert skipped == []
    formats = sorted((g.shape[0], piece[0].pixel_format[:3]) for g, piece in stacks)
    assert formats == [(1, (1, 1, 0)), (1, (16, 0, 1)), (3, (16, 0, 0))]
    assert all(len({h.pixel_format for h in piece}) == 1 for _, piece in stacks)
