"""spinedata.export: every exported voxel sits where the stack (and dcm2niix) puts it.

* real scanner series, ingested into a store: the NIfTI export equals dcm2niix's conversion voxel for voxel
  (the index map between the two is a signed permutation, the affines agree within 1e-3 mm, the pixels
  are equal after the mapping); ITK's physical points (of the SimpleITK export, and of the NIfTI export
  read by ITK) equal ``Stack.voxel_to_world``;
* a labelled point: LPS world -> voxel (i, j, k) of the export -> world is the identity, and (i, j, k) is
  the label's (x, y, slice);
* irregular stacks (synthetic and the real ``failing/`` series) are refused, or resampled onto a uniform
  grid that reproduces a linear intensity field of world coordinates exactly;
* a missing library of the ``interop`` extra is a one-line ``MissingExtraError``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinedata.dicom import read_headers, read_stack
from spinedata.errors import SpineError
from spinedata.export import (
    ArrayStack,
    ExportError,
    MissingExtraError,
    export_image,
    points_table,
    to_monai,
    to_nifti,
    to_sitk,
    to_torchio,
)
from spinedata.geometry import StackGeometry, lps_to_ras
from spinedata.ingest import ingest
from spinedata.resample import resample_uniform, uniform_grid
from spinedata.stacks import build_stacks
from spinedata.store import open_dataset
from tests.helpers.dicom_writer import rotation
from tests.helpers.ingest_data import write_competition_dataset
from tests.helpers.testdata import dicom_case

nib = pytest.importorskip("nibabel")
sitk = pytest.importorskip("SimpleITK")

AFFINE_ATOL_MM = 1e-3
"""As tests/spinedata/test_dcm2niix_agreement.py: dcm2niix stores its affine as float32."""
REAL_SERIES = [
    "dcm_qa_decubitus/HFS_t1_sag",
    "dcm_qa_decubitus/HFP_t1_sag",
    "dicom2nifti/anatomical/001",
    "dicom2nifti/hitachi/anatomical/001",
    "dicom2nifti/ge/anatomical/001_single_slice",
    "dicom2nifti/generic/compressed_rle/001",
    "dicom2nifti/failing/sliceorientation/001",
]
DCM2NIIX_VARIANTS = ("_Tilt_", "_Eq_")


def _dcm2niix() -> str:
    for candidate in (Path(sys.executable).with_name("dcm2niix"), shutil.which("dcm2niix")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("dcm2niix not installed (pip install dcm2niix)")


def _dcm2niix_images(folder: Path, out: Path) -> list:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([_dcm2niix(), "-z", "n", "-f", "%s_%p", "-o", str(out), str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [nib.load(p) for p in sorted(out.glob("*.nii")) if not any(v in p.name for v in DCM2NIIX_VARIANTS)]


def _stacks_of_store(folder: Path, store: Path) -> list:
    """Ingest one DICOM folder (as a test split: studies found from their UIDs) and return its stacks."""
    ingest(folder, store, split="test", workers=1)
    dataset = open_dataset(store)
    return [stack for study in dataset for series in study.series.values() for stack in series.stacks]


def _index_map(ours, theirs) -> tuple[np.ndarray, np.ndarray] | None:
    """``(P, t)`` with their voxel = ``P @ our voxel + t`` (P a signed permutation), or None."""
    if ours.shape[:3] != theirs.shape[:3] and sorted(ours.shape[:3]) != sorted(theirs.shape[:3]):
        return None
    mapping = np.linalg.inv(theirs.affine) @ ours.affine
    perm, shift = np.rint(mapping[:3, :3]), np.rint(mapping[:3, 3])
    if not (np.allclose(mapping[:3, :3], perm, atol=1e-3) and np.allclose(mapping[:3, 3], shift, atol=1e-2)):
        return None
    if sorted(np.abs(perm).sum(axis=0)) != [1, 1, 1] or sorted(np.abs(perm).sum(axis=1)) != [1, 1, 1]:
        return None
    return perm.astype(int), shift.astype(int)


def _their_values_at_our_voxels(ours, theirs, perm, shift) -> np.ndarray:
    ijk = np.indices(ours.shape[:3]).reshape(3, -1)
    index = perm @ ijk + shift[:, None]
    data = np.asanyarray(theirs.dataobj)
    data = data[..., None] if data.ndim == 2 else data
    assert np.all(index >= 0) and np.all(index < np.array(data.shape[:3])[:, None])
    return data[tuple(index)].reshape(ours.shape[:3])


# ------------------------------------------------------------------------------------- real series
@pytest.mark.testdata
@pytest.mark.parametrize("case", REAL_SERIES)
def test_nifti_export_puts_every_voxel_where_dcm2niix_does(testdata_dir, tmp_path, case):
    folder = dicom_case(testdata_dir, case)
    stacks = _stacks_of_store(folder, tmp_path / "store.zarr")
    theirs = _dcm2niix_images(folder, tmp_path / "dcm2niix")
    assert len(stacks) == len(theirs)
    for stack in stacks:
        path = tmp_path / f"{stack.series_id}_{stack.index}.nii.gz"
        nib.save(stack.to_nifti(), path)
        ours = nib.load(path)  # through the file: the header's float32 affine, sform/qform codes
        assert ours.header["sform_code"] == 1 and ours.header["qform_code"] == 1
        np.testing.assert_allclose(ours.affine, lps_to_ras(stack.affine)[:, [2, 1, 0, 3]], atol=1e-4)
        np.testing.assert_allclose(ours.get_qform(), ours.affine, atol=1e-4)
        matches = [(t, m) for t in theirs if (m := _index_map(ours, t)) is not None]
        matches = [(t, m) for t, m in matches
                   if np.array_equal(_their_values_at_our_voxels(ours, t, *m), np.asanyarray(ours.dataobj))]
        assert len(matches) == 1, f"{stack}: {len(matches)} dcm2niix images hold its voxels at its places"
        (image, (perm, shift)), = matches
        moved = np.eye(4)
        moved[:3, :3], moved[:3, 3] = perm, shift
        np.testing.assert_allclose(ours.affine, image.affine @ moved, atol=AFFINE_ATOL_MM)
        corners = np.array([[i, j, k] for i in (0, ours.shape[0] - 1) for j in (0, ours.shape[1] - 1)
                            for k in (0, ours.shape[2] - 1)], dtype=float)  # fmt: skip
        ras = nib.affines.apply_affine(ours.affine, corners)
        np.testing.assert_allclose(ras, nib.affines.apply_affine(image.affine, corners @ perm.T + shift), atol=1e-2)
        np.testing.assert_allclose(ras * [-1, -1, 1], stack.voxel_to_world(corners[:, ::-1]), atol=1e-3)


@pytest.mark.testdata
@pytest.mark.parametrize("case", ["dcm_qa_decubitus/HFP_t1_sag", "dicom2nifti/anatomical/001"])
def test_itk_physical_points_are_the_stacks_world_points(testdata_dir, tmp_path, case):
    """SimpleITK export (in memory and through .nrrd) and the NIfTI export read by ITK (RAS -> LPS)."""
    (stack,) = _stacks_of_store(dicom_case(testdata_dir, case), tmp_path / "store.zarr")
    nrrd, nifti = tmp_path / "s.nrrd", tmp_path / "s.nii.gz"
    sitk.WriteImage(stack.to_sitk(), str(nrrd))
    nib.save(stack.to_nifti(), nifti)
    volume = stack.read()
    rng = np.random.default_rng(0)
    voxels = rng.integers(0, stack.shape, size=(50, 3))
    for image, atol in ((stack.to_sitk(), 1e-9), (sitk.ReadImage(str(nrrd)), 1e-6), (sitk.ReadImage(str(nifti)), 1e-3)):
        for slice_, row, col in voxels:
            index = (int(col), int(row), int(slice_))
            point = image.TransformIndexToPhysicalPoint(index)
            np.testing.assert_allclose(point, stack.voxel_to_world([slice_, row, col]), atol=atol)
            assert image.GetPixel(index) == volume[slice_, row, col]
        fractional = rng.uniform(-0.5, np.array(stack.shape) - 0.5, size=(20, 3))
        for voxel in fractional:
            point = image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in voxel[::-1]))
            np.testing.assert_allclose(point, stack.voxel_to_world(voxel), atol=atol)


@pytest.mark.testdata
@pytest.mark.parametrize("case", ["dicom2nifti/failing/gantrytilting/001", "dicom2nifti/failing/sliceincrement/001",
                                  "dicom2nifti/failing/sliceincrement/002"])  # fmt: skip
def test_real_irregular_stacks_are_refused_or_resampled(testdata_dir, tmp_path, case):
    (stack,) = _stacks_of_store(dicom_case(testdata_dir, case), tmp_path / "store.zarr")
    with pytest.raises(ExportError, match="resample"):
        stack.to_nifti()
    with pytest.raises(ExportError):
        stack.to_sitk()
    image = stack.to_nifti(resample=True)
    geometry, volume = stack.geometry, stack.read()
    affine = uniform_grid(geometry)
    np.testing.assert_allclose(image.affine, lps_to_ras(affine)[:, [2, 1, 0, 3]])
    step = affine[:3, 0]
    assert np.linalg.norm(np.cross(step, geometry.normal)) < 1e-9  # along n: no shear left
    data = np.asanyarray(image.dataobj)
    if "shear" not in geometry.flags:  # the first and last acquired slices are kept exactly
        np.testing.assert_array_equal(data[..., 0], volume[0].T.astype(np.float32))
        np.testing.assert_array_equal(data[..., -1], volume[-1].T.astype(np.float32))
    else:  # the first slice is the origin: unshifted
        np.testing.assert_array_equal(data[..., 0], volume[0].T.astype(np.float32))


@pytest.mark.testdata
def test_resampled_gantry_tilt_agrees_with_dcm2niix_tilt_correction(testdata_dir, tmp_path):
    """dcm2niix writes a tilt-corrected ``_Tilt_`` copy on its own (wider) grid: sampled (linearly) at our
    resampled voxels' RAS points, it gives our values within interpolation noise (grey levels 0-254)."""
    from scipy import ndimage

    folder = dicom_case(testdata_dir, "dicom2nifti/failing/gantrytilting/001")
    (stack,) = _stacks_of_store(folder, tmp_path / "store.zarr")
    _dcm2niix_images(folder, tmp_path / "dcm2niix")
    (tilt,) = [nib.load(p) for p in (tmp_path / "dcm2niix").glob("*_Tilt_*.nii")]
    ours = stack.to_nifti(resample=True)
    ijk = np.indices(ours.shape).reshape(3, -1)
    theirs_ijk = nib.affines.apply_affine(np.linalg.inv(tilt.affine) @ ours.affine, ijk.T).T
    theirs = np.asanyarray(tilt.dataobj).astype(np.float64)
    inside = np.all((theirs_ijk >= 0) & (theirs_ijk <= np.array(theirs.shape)[:, None] - 1), axis=0)
    inside &= np.asanyarray(ours.dataobj).reshape(-1) != 0  # not the corners our grid leaves at 0
    values = ndimage.map_coordinates(theirs, theirs_ijk[:, inside], order=1)
    mine = np.asanyarray(ours.dataobj).reshape(-1)[inside]
    assert inside.mean() > 0.7
    difference = np.abs(values - mine)
    assert np.median(difference) < 0.5 and np.percentile(difference, 99) < 1.0


# ------------------------------------------------------------------------------------- labelled points
def test_labelled_point_round_trips_through_the_exported_voxels(tmp_path):
    data = tmp_path / "data"
    write_competition_dataset(data)
    ingest(data, tmp_path / "store.zarr", split="train", workers=1)
    dataset = open_dataset(tmp_path / "store.zarr")
    labels = dataset.labels
    assert len(labels) == 2 and (labels["stack"] >= 0).all()
    for row in labels.itertuples():
        stack = dataset.study(row.study_id).series[row.series_id].stacks[row.stack]
        image = export_image(stack)
        table = points_table(image, labels.iloc[[row.Index]])
        ijk = table[["i", "j", "k"]].to_numpy()[0]
        np.testing.assert_allclose(ijk, [row.x, row.y, row.slice], atol=1e-6)  # column, row, slice
        lps = [row.world_x, row.world_y, row.world_z]
        np.testing.assert_allclose(image.index_to_world(ijk), lps, atol=1e-9)
        np.testing.assert_allclose(stack.voxel_to_world(ijk[::-1]), lps, atol=1e-9)
        ras = table[["ras_x", "ras_y", "ras_z"]].to_numpy()[0]
        np.testing.assert_allclose(ras, np.array(lps) * [-1, -1, 1])
        np.testing.assert_allclose(nib.affines.apply_affine(stack.to_nifti().affine, ijk), ras, atol=1e-9)
        itk = stack.to_sitk()
        np.testing.assert_allclose(itk.TransformContinuousIndexToPhysicalPoint(tuple(ijk)), lps, atol=1e-9)


def _random_geometry(angles, spacing, step, shape, origin) -> StackGeometry:
    rot = rotation(angles)
    r, c = rot[:, 0], rot[:, 1]
    n = np.cross(r, c)
    positions = np.asarray(origin) + np.arange(shape[0])[:, None] * step * n
    return StackGeometry.from_positions(np.concatenate([r, c]), spacing, positions, np.arange(shape[0]) + 1,
                                        shape[1:], single_slice_spacing=step)  # fmt: skip


angles_st = st.tuples(*[st.floats(-180, 180)] * 3)
spacing_st = st.tuples(st.floats(0.2, 3.0), st.floats(0.2, 3.0))
shape_st = st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(1, 9))
origin_st = st.tuples(*[st.floats(-300, 300)] * 3)


@settings(max_examples=40, deadline=None)
@given(angles_st, spacing_st, st.floats(0.3, 8.0), shape_st, origin_st,
       st.lists(st.tuples(*[st.floats(-20, 20)] * 3), min_size=1, max_size=5))  # fmt: skip
def test_world_to_export_voxel_and_back_and_itk_agree(angles, spacing, step, shape, origin, offsets):
    geometry = _random_geometry(angles, spacing, step, shape, origin)
    stack = ArrayStack(np.zeros(shape, dtype=np.int16), geometry)
    image = export_image(stack)
    lps = np.asarray(origin) + np.asarray(offsets)
    ijk = image.world_to_index(lps)
    np.testing.assert_allclose(image.index_to_world(ijk), lps, atol=1e-6)
    np.testing.assert_allclose(ijk, geometry.world_to_voxel(lps)[:, ::-1], atol=1e-6)
    itk = to_sitk(stack)
    nifti = to_nifti(stack)
    for point, index in zip(lps, ijk, strict=True):
        np.testing.assert_allclose(itk.TransformContinuousIndexToPhysicalPoint(tuple(index)), point, atol=1e-6)
        # NIfTI keeps its sform/qform in float32 and nibabel's image affine is the header's: ~1e-7 of |origin|
        np.testing.assert_allclose(nib.affines.apply_affine(nifti.affine, index), point * [-1, -1, 1], atol=5e-5)


# ------------------------------------------------------------------------------------- irregular stacks
def _linear_field(geometry: StackGeometry, weights=(0.7, -1.3, 2.1), bias=500.0) -> np.ndarray:
    """The stack's voxels filled with ``weights . world + bias`` at their real positions (float64)."""
    ijk = np.indices(geometry.shape).reshape(3, -1).T
    world = geometry.voxel_to_world(ijk)
    return (world @ np.asarray(weights) + bias).reshape(geometry.shape)


def _irregular(kind: str) -> StackGeometry:
    rot = rotation((10.0, 80.0, -5.0))
    r, c = rot[:, 0], rot[:, 1]
    n = np.cross(r, c)
    origin = np.array([12.0, -40.0, 25.0])
    if kind == "nonuniform":
        depths = np.array([0.0, 3.0, 7.5, 10.0, 14.5, 18.0])
        positions = origin + depths[:, None] * n
    elif kind == "missing_slices":
        depths = np.array([0.0, 4.0, 8.0, 16.0, 20.0, 32.0])
        positions = origin + depths[:, None] * n
    else:  # shear: a constant in-plane drift of 0.6 mm per slice along r (gantry tilt)
        positions = origin + np.arange(6)[:, None] * (4.0 * n + 0.6 * r)
    return StackGeometry.from_positions(np.concatenate([r, c]), (0.8, 0.5), positions, np.arange(6) + 1, (14, 18))


@pytest.mark.parametrize("kind", ["nonuniform", "missing_slices", "shear"])
def test_irregular_stack_is_refused_in_one_line(kind):
    geometry = _irregular(kind)
    assert kind in geometry.flags
    stack = ArrayStack(np.zeros(geometry.shape, np.uint16), geometry, name="s/1/0")
    for export in (to_nifti, to_sitk, to_torchio, to_monai):
        with pytest.raises(ExportError) as info:
            export(stack)
        assert isinstance(info.value, SpineError) and "\n" not in str(info.value)
        assert kind in str(info.value) and "resample" in str(info.value)


@pytest.mark.parametrize("kind", ["nonuniform", "missing_slices", "shear"])
def test_resampling_reproduces_a_linear_field_on_a_uniform_grid(kind):
    geometry = _irregular(kind)
    weights, bias = np.array([0.7, -1.3, 2.1]), 500.0
    volume = _linear_field(geometry, weights, bias).astype(np.float32)
    out, affine = resample_uniform(volume, geometry)
    np.testing.assert_allclose(affine[:3, 1:], geometry.affine[:3, 1:])  # rows, columns as acquired
    np.testing.assert_allclose(affine[:3, 3], geometry.positions[0])
    step = affine[:3, 0]
    np.testing.assert_allclose(step / np.linalg.norm(step), geometry.normal, atol=1e-12)
    depth = geometry.positions @ geometry.normal
    np.testing.assert_allclose(np.linalg.norm(step) * (len(out) - 1), depth[-1] - depth[0])
    if kind == "missing_slices":
        assert len(out) == 9 and np.isclose(np.linalg.norm(step), 4.0)  # every 4 mm, missing ones filled
        for s, d in enumerate(depth):  # acquired slices kept bit for bit
            np.testing.assert_array_equal(out[int(round((d - depth[0]) / 4.0))], volume[s])
    ijk = np.indices(out.shape).reshape(3, -1).T
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    expected = (world @ weights + bias).reshape(out.shape)
    source = geometry.world_to_voxel(world).reshape(*out.shape, 3)
    inside = np.all((source[..., 1:] >= 0) & (source[..., 1:] <= np.array(geometry.shape[1:]) - 1), axis=-1)
    assert inside.mean() > 0.6
    np.testing.assert_allclose(out[inside], expected[inside], rtol=1e-5, atol=2e-3)
    if kind == "shear":
        limit = np.array(geometry.shape[1:]) - 0.5
        outside = np.any((source[..., 1:] < -0.5 - 1e-9) | (source[..., 1:] > limit + 1e-9), axis=-1)
        assert outside.any() and np.all(out[outside] == 0)
    image = export_image(ArrayStack(volume, geometry), resample=True)
    assert image.resampled and image.volume.dtype == np.float32
    lps = geometry.voxel_to_world([[2.0, 3.0, 4.0]])  # a labelled point on an acquired voxel
    ijk_point = image.world_to_index(lps)
    np.testing.assert_allclose(image.index_to_world(ijk_point), lps, atol=1e-9)


def test_regular_stack_export_keeps_values_and_dtype():
    geometry = _random_geometry((0, 90, 0), (0.6, 0.9), 4.0, (5, 7, 8), (1.0, 2.0, 3.0))
    volume = np.random.default_rng(1).integers(0, 4000, size=geometry.shape, dtype=np.uint16)
    image = to_nifti(ArrayStack(volume, geometry))
    assert image.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), volume.transpose(2, 1, 0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(to_sitk(ArrayStack(volume, geometry))), volume)


def test_torchio_and_monai_carry_the_ras_affine():
    pytest.importorskip("torchio")
    pytest.importorskip("monai")
    geometry = _random_geometry((20, 70, 5), (0.6, 0.9), 4.0, (5, 7, 8), (1.0, 2.0, 3.0))
    volume = np.random.default_rng(2).integers(0, 4000, size=geometry.shape, dtype=np.uint16)
    stack = ArrayStack(volume, geometry)
    ras = lps_to_ras(geometry.affine)[:, [2, 1, 0, 3]]
    image = to_torchio(stack)
    np.testing.assert_allclose(image.affine, ras)
    assert tuple(image.shape) == (1, 8, 7, 5)
    np.testing.assert_array_equal(image.data.numpy()[0], volume.transpose(2, 1, 0))
    meta = to_monai(stack)
    np.testing.assert_allclose(meta.affine.numpy(), ras)
    assert str(meta.meta["space"]) == "RAS" and tuple(meta.shape) == (1, 8, 7, 5)
    np.testing.assert_array_equal(meta.numpy()[0], volume.transpose(2, 1, 0))


# ------------------------------------------------------------------------------------- missing extra
@pytest.mark.parametrize(("export", "module"), [(to_nifti, "nibabel"), (to_sitk, "SimpleITK"),
                                                (to_torchio, "torchio"), (to_monai, "monai")])  # fmt: skip
def test_missing_library_is_one_line_naming_the_extra(monkeypatch, export, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    geometry = _random_geometry((0, 0, 0), (1.0, 1.0), 1.0, (2, 3, 4), (0.0, 0.0, 0.0))
    with pytest.raises(MissingExtraError) as info:
        export(ArrayStack(np.zeros(geometry.shape, np.int16), geometry))
    message = str(info.value)
    assert isinstance(info.value, SpineError) and "\n" not in message
    assert message.endswith(f"needs the interop extra: pip install 'spine[interop]' ({module} is not installed)")


@pytest.mark.testdata
def test_reading_dicom_directly_exports_too(testdata_dir):
    """``ArrayStack`` exports a stack read straight from DICOM (no store)."""
    folder = dicom_case(testdata_dir, "dicom2nifti/anatomical/001")
    ((geometry, headers),) = build_stacks([h for p in sorted(folder.iterdir()) for h in read_headers(p)])[0]
    image = to_nifti(ArrayStack(read_stack(headers), geometry))
    np.testing.assert_allclose(image.affine, lps_to_ras(geometry.affine)[:, [2, 1, 0, 3]])
