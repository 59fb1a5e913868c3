"""Downsampled OME-Zarr levels (``spine ngff STORE --levels N``): ome-zarr-py opens every stack with all
its levels, each level is the mean of its pixel blocks and sits where NGFF's scale and translation (and
spinedata's level affine) say, the store still verifies and reads as before, and re-running changes
nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr
from typer.testing import CliRunner

from cli.app import app
from spinedata.geometry import StackGeometry
from spinedata.store import layout as L
from spinedata.store import ngff, open_dataset
from spinedata.store.integrity import DamagedStoreError
from spinedata.store.levels import MIN_SIZE, level_shapes
from spinedata.store.migrate import add_ngff
from spinedata.store.verify import verify_store
from spinedata.store.writer import StudyWriter, create_or_open_store

ome_zarr_io = pytest.importorskip("ome_zarr.io")
ome_zarr_reader = pytest.importorskip("ome_zarr.reader")
v05_image = pytest.importorskip("ome_zarr_models.v05.image")

runner = CliRunner()


def oblique_iop(angle: float) -> np.ndarray:
    r = np.array([np.cos(angle), np.sin(angle), 0.0])
    c = np.array([0.0, 0.0, -1.0])
    return np.concatenate([r, c])


def geometry(shape, iop, spacing, step, origin) -> StackGeometry:
    iop = np.asarray(iop, np.float64)
    n = np.cross(iop[:3], iop[3:])
    positions = np.asarray(origin, np.float64) + np.outer(np.arange(shape[0]), step * n)
    return StackGeometry.from_positions(iop, spacing, positions, np.arange(1, shape[0] + 1), shape[1:])


STACKS = {
    # name: (shape, dtype, pixel spacing, slice step, rescale); odd sizes drop their last row or column
    "u16": ((5, 301, 259), np.uint16, (0.7, 0.55), 3.3, None),  # levels 150x129, 75x64
    "f32": ((4, 130, 200), np.float32, (0.9, 0.8), 4.0, None),  # level 65x100
    "scaled": ((3, 256, 256), np.int16, (0.5, 0.5), 5.0, (0.25, -10.0)),  # levels 128, 64
    "small": ((6, 100, 127), np.uint16, (1.0, 1.0), 4.0, None),  # none: 50 < 64
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A store of one study whose stacks (``STACKS``) have the shapes and dtypes levels must handle, as
    ingest writes it (no levels). Read-only."""
    root = tmp_path_factory.mktemp("levels") / "test.zarr"
    create_or_open_store(root, split="test", source="tests")
    rng = np.random.default_rng(3)
    with StudyWriter(root, "7") as writer:
        for i, (name, (shape, dtype, spacing, step, rescale)) in enumerate(STACKS.items()):
            writer.add_series(name, description=name, role=None, series_uid=f"1.2.{i}")
            if np.dtype(dtype).kind == "f":
                image = rng.normal(100, 30, shape).astype(dtype)
            else:
                image = rng.integers(0, 4000 if dtype == np.uint16 else 300, shape).astype(dtype)
            g = geometry(shape, oblique_iop(0.1 * i + 0.3), spacing, step, (10.0 * i, -50.0, 80.0))
            writer.add_stack(name, g, image, rescale)
        writer.commit()
    return root


@pytest.fixture(scope="module")
def leveled(fresh, tmp_path_factory):
    """``fresh`` with ``spine ngff --levels 5`` (as many as fit). Read-only."""
    root = tmp_path_factory.mktemp("leveled") / "test.zarr"
    shutil.copytree(fresh, root)
    report = add_ngff(root, levels=5)
    assert (report.stacks, report.written, report.levels_written, report.levels_removed) == (4, 3, 5, 0)
    return root


def stacks(root):
    return [stack for study in open_dataset(root) for series in study.series.values() for stack in series.stacks]


def datasets(root, stack) -> list[dict]:
    return json.loads((root / stack.path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]["datasets"]


def transform(dataset: dict) -> tuple[np.ndarray, np.ndarray]:
    scale, translation = dataset["coordinateTransformations"]
    return np.array(scale["scale"]), np.array(translation["translation"])


def open_ome(folder):
    """The image node ome-zarr-py finds at a stack group (napari's reader does the same)."""
    node = next(iter(ome_zarr_reader.Reader(ome_zarr_io.parse_url(str(folder)))()))
    assert any(isinstance(spec, ome_zarr_reader.Multiscales) for spec in node.specs)
    return node


def files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_level_shapes_halve_rows_and_cols_until_under_the_minimum():
    assert level_shapes((5, 301, 259), 5) == [(5, 150, 129), (5, 75, 64)]
    assert level_shapes((5, 301, 259), 1) == [(5, 150, 129)]
    assert level_shapes((6, 100, 127), 5) == [] and MIN_SIZE == 64
    assert level_shapes((2, 512, 512), 9) == [(2, 256, 256), (2, 128, 128), (2, 64, 64)]


def test_ome_zarr_opens_every_stack_with_all_its_levels_as_block_means(leveled):
    for stack in stacks(leveled):
        expected = [stack.shape, *level_shapes(stack.shape, 5)]
        node = open_ome(leveled / stack.path)
        assert [tuple(d.shape) for d in node.data] == expected, stack.path
        stored = zarr.open_array(str(leveled / stack.path / L.IMAGE), mode="r")[...]
        np.testing.assert_array_equal(np.asarray(node.data[0]), stored)
        for level, data in enumerate(node.data[1:], 1):
            f = 2**level
            s, r, c = data.shape
            means = stored[:, : r * f, : c * f].astype(np.float64).reshape(s, r, f, c, f).mean(axis=(2, 4))
            values = np.asarray(data)
            assert values.dtype == stored.dtype
            if stored.dtype.kind == "f":
                np.testing.assert_allclose(values, means, rtol=1e-6)
            else:
                np.testing.assert_array_equal(values, np.rint(means))
        transforms = node.metadata["coordinateTransformations"]
        assert len(transforms) == len(expected)


def test_a_level_pixel_centre_is_the_mean_of_its_source_pixel_centres(leveled):
    """In NGFF coordinates (scale, translation) and in LPS (spinedata's level affine), for every level."""
    rng = np.random.default_rng(0)
    for stack in stacks(leveled):
        sets = datasets(leveled, stack)
        scale0, translation0 = transform(sets[0])
        extra = json.loads((leveled / stack.path / "zarr.json").read_text())["attributes"][ngff.EXTRA]
        affines = {t["input"]: np.vstack([t["affine"], [0, 0, 0, 1]]) for t in extra["coordinateTransformations"]}
        assert list(affines) == [d["path"] for d in sets]
        for level, dataset in enumerate(sets[1:], 1):
            assert dataset["path"] == f"levels/{level}"
            f = 2**level
            scale, translation = transform(dataset)
            np.testing.assert_allclose(scale, scale0 * [1, f, f])
            shape = level_shapes(stack.shape, level)[-1]
            voxels = rng.integers(0, shape, (10, 3))
            for k, i, j in voxels:
                block = np.array([(k, f * i + a, f * j + b) for a in range(f) for b in range(f)], np.float64)
                centre = np.array([k, i, j]) * scale + translation
                np.testing.assert_allclose(centre, (block * scale0 + translation0).mean(axis=0), atol=1e-9)
                lps = affines[dataset["path"]] @ [k, i, j, 1]
                np.testing.assert_allclose(lps[:3], stack.voxel_to_world(block).mean(axis=0), atol=1e-9)


def test_levels_validate_as_ngff_05(leveled):
    for stack in stacks(leveled):
        image = v05_image.Image.from_zarr(zarr.open_group(str(leveled / stack.path), mode="r"))
        paths = [d.path for d in image.ome_attributes.multiscales[0].datasets]
        assert paths == [L.IMAGE, *(f"levels/{n}" for n in range(1, len(level_shapes(stack.shape, 5)) + 1))]


def test_spinedata_and_xarray_still_read_the_image_only_and_verify_passes(fresh, leveled):
    for before, after in zip(stacks(fresh), stacks(leveled), strict=True):
        np.testing.assert_array_equal(after.read(), before.read())
        xr.testing.assert_identical(after.image, before.image)
        group = xr.open_zarr(str(leveled), group=after.path, consolidated=False)  # levels: a subgroup
        assert set(group.data_vars) == {L.IMAGE, L.POSITION}
    report = verify_store(leveled)
    assert report.ok, report.damage
    assert report.arrays == verify_store(fresh).arrays + 5  # every level read, its checksums verified
    result = runner.invoke(app, ["info", str(leveled), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["damage"] == {}


def test_rerunning_is_a_no_op_and_fewer_levels_or_none_restore_the_rest(fresh, leveled, tmp_path):
    root = tmp_path / "test.zarr"
    shutil.copytree(leveled, root)
    before = files(root)
    for levels in (5, None):
        report = add_ngff(root, levels=levels)
        assert (report.written, report.levels_written, report.levels_removed) == (0, 0, 0)
    assert files(root) == before  # nothing rewritten, byte for byte
    report = add_ngff(root, levels=1)
    assert (report.written, report.levels_written, report.levels_removed) == (2, 0, 2)
    assert {s.path: len(datasets(root, s)) for s in stacks(root)} == {
        "studies/7/u16/0": 2, "studies/7/f32/0": 2, "studies/7/scaled/0": 2, "studies/7/small/0": 1}
    assert verify_store(root).ok
    report = add_ngff(root, levels=0)
    assert (report.levels_written, report.levels_removed) == (0, 3)
    assert files(root) == files(fresh)  # back to what ingest writes


def test_an_interrupted_run_is_finished_by_the_next(leveled, tmp_path):
    root = tmp_path / "test.zarr"
    shutil.copytree(leveled, root)
    stack = root / "studies/7/u16/0"
    shutil.copytree(stack / "levels/2", stack / "levels/.2.dead")  # a temporary folder left by a kill
    shutil.rmtree(stack / "levels/1")  # not written yet (as if killed before; the metadata lists it)
    shard = stack / "levels/2/c.0.0.0"
    shard.write_bytes(shard.read_bytes()[:-10])  # a shard cut short
    assert not verify_store(root).ok
    report = add_ngff(root, levels=5)
    assert (report.written, report.levels_written) == (0, 2)
    assert files(root) == files(leveled)


def test_no_level_is_made_from_a_damaged_image(fresh, tmp_path):
    root = tmp_path / "test.zarr"
    shutil.copytree(fresh, root)
    (root / "studies/7/u16/0/image/c.0.0.0").unlink()
    with pytest.raises(DamagedStoreError, match="study 7, array u16/0/image: shard c.0.0.0 missing"):
        add_ngff(root, levels=2)
    assert not (root / "studies/7/u16/0/levels/1").exists()


def test_levels_of_an_ingested_store_and_of_a_store_in_memory(synth_store, tmp_path):
    from spinedata.store.objectpath import subfolders
    from spinedata.store.urls import store_location

    root = tmp_path / "train.zarr"
    shutil.copytree(synth_store, root)
    report = add_ngff(root, levels=3)
    wanted = {s.path: len(level_shapes(s.shape, 3)) for s in stacks(root)}
    assert report.levels_written == sum(wanted.values()) > 0
    for stack in stacks(root):
        assert len(open_ome(root / stack.path).data) == 1 + wanted[stack.path]
    assert verify_store(root).ok

    url = f"memory://spine-levels-{tmp_path.name}/train.zarr"
    memory = store_location(url, writing=True)
    for path in sorted(p for p in synth_store.rglob("*") if p.is_file()):
        (memory / path.relative_to(synth_store).as_posix()).write_bytes(path.read_bytes())
    report = add_ngff(url, levels=3)
    assert report.levels_written == sum(wanted.values())
    assert add_ngff(url, levels=3).levels_written == 0
    for stack in stacks(root):  # the same objects as the local store's files
        remote, n = memory / stack.path, wanted[stack.path]
        assert sorted(name for name, _ in subfolders(remote / "levels")) == [str(k) for k in range(1, n + 1)]
        names = ["zarr.json", *(f"levels/{k}/{f}" for k in range(1, n + 1) for f in ("zarr.json", "c.0.0.0"))]
        for name in names:
            assert (remote / name).read_bytes() == (root / stack.path / name).read_bytes(), name
    assert verify_store(url).ok


def test_spine_ngff_levels_command(fresh, tmp_path):
    root = tmp_path / "test.zarr"
    shutil.copytree(fresh, root)
    result = runner.invoke(app, ["ngff", str(root), "--levels", "2"])
    assert result.exit_code == 0, result.output
    assert "4 stacks; NGFF metadata written to 3, 1 already had it; level arrays written: 5, removed: 0" in result.output
    result = runner.invoke(app, ["ngff", str(root), "--levels", "2"])
    assert "written to 0, 4 already had it; level arrays written: 0, removed: 0" in result.output
    result = runner.invoke(app, ["ngff", str(root), "--levels", "-1"])
    assert result.exit_code == 2 and "-1" in result.output


def test_a_level_that_cannot_be_deleted_is_an_error_not_counted(leveled, tmp_path, monkeypatch, capsys):
    """``spine ngff --levels`` reports a failed delete as one line, never as removed (``shutil.rmtree`` is
    made to fail: the tests may run as root, whom permissions do not stop)."""
    from spinedata.store import objectpath
    from tests.helpers.cli_helpers import cli_error

    root = tmp_path / "test.zarr"
    shutil.copytree(leveled, root)
    real = shutil.rmtree

    def refuse(path, ignore_errors=False, **kwargs):  # as a real failure would: swallowed when ignored
        if "levels" not in str(path):
            real(path, ignore_errors=ignore_errors, **kwargs)
        elif not ignore_errors:
            raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(objectpath.shutil, "rmtree", refuse)
    with pytest.raises(PermissionError):
        add_ngff(root, levels=1)
    assert (root / "studies/7/u16/0/levels/2/zarr.json").exists()
    error = cli_error(monkeypatch, capsys, ["ngff", str(root), "--levels", "1"])
    assert error.startswith("error: Permission denied: ") and "levels/2" in error and "\n" not in error
