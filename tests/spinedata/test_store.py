"""The store: writing whole studies, reading them through the public API and through plain zarr/xarray."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import spinedata as sd
from spinedata.errors import StoreError
from spinedata.geometry import StackGeometry
from spinedata.ids import check_id
from spinedata.store import Series, Study, StudyWriter, create_or_open_store, open_dataset
from spinedata.store.layout import STAGING, complete_study_ids
from spinedata.store.tables import read_table, replace_table
from spinedata.store.urls import store_location
from spinedata.store.writer import IngestLock, clean_stale

ORIENTATION = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])  # sagittal: r = +y, c = -z, n = -x


def make_geometry(n=5, rows=30, cols=40, spacing=(0.7, 0.9), step=3.5, gap_at=None):
    """A sagittal stack; ``gap_at`` makes one gap 1.2x (non-uniform, kept as real positions)."""
    normal = np.cross(ORIENTATION[:3], ORIENTATION[3:])
    offsets = np.arange(n) * step
    if gap_at is not None:
        offsets[gap_at:] += 0.2 * step
    positions = np.array([12.0, -30.0, 45.0]) + offsets[:, None] * normal
    return StackGeometry.from_positions(ORIENTATION, spacing, positions, np.arange(n) + 10, (rows, cols))


def write_study(root, study_id="7", images=None, geometries=None, commit=True):
    geometries = geometries or [make_geometry()]
    rng = np.random.default_rng(0)
    images = images or [rng.integers(0, 2000, g.shape, dtype=np.uint16) for g in geometries]
    writer = StudyWriter(root, study_id)
    writer.add_series("42", description="Sagittal T2/STIR", role="Sagittal T2/STIR", series_uid="1.2.3")
    for geometry, image in zip(geometries, images, strict=True):
        writer.add_stack("42", geometry, image)
    if commit:
        writer.commit(["a warning"])
    return images


@pytest.fixture
def store(tmp_path):
    return create_or_open_store(tmp_path / "s.zarr", split="train", source="tests")


def test_round_trip_through_public_api(store):
    geometries = [make_geometry(), make_geometry(n=4, gap_at=2)]
    images = write_study(store, geometries=geometries)
    ds = sd.open_dataset(store)
    assert ds.study_ids == ["7"]
    study = ds.study("7")
    assert study.warnings == ["a warning"]
    series = study.series["42"]
    assert (series.description, series.role, series.series_instance_uid) == ("Sagittal T2/STIR",) * 2 + ("1.2.3",)
    assert len(series.stacks) == 2
    for stack, geometry, image in zip(series.stacks, geometries, images, strict=True):
        np.testing.assert_array_equal(stack.read(), image)
        np.testing.assert_array_equal(stack.read((1, 3)), image[1:3])
        np.testing.assert_array_equal(stack.affine, geometry.affine)
        np.testing.assert_array_equal(stack.positions, geometry.positions)
        np.testing.assert_array_equal(stack.instance_numbers, geometry.instance_numbers)
        assert stack.shape == image.shape and stack.flags == geometry.flags
        assert stack.image.dims == ("slice", "row", "col")
        assert stack.image.dtype == np.uint16
        np.testing.assert_array_equal(stack.image.values, image)
        np.testing.assert_array_equal(stack.image["instance_number"].values, geometry.instance_numbers)
        ijk = np.array([[1.0, 2.5, 3.25], [3.0, 0.0, 7.0]])
        np.testing.assert_allclose(stack.voxel_to_world(ijk), geometry.voxel_to_world(ijk))
        np.testing.assert_allclose(stack.world_to_voxel(stack.voxel_to_world(ijk)), ijk, atol=1e-9)
    assert series.stacks[1].flags == ("nonuniform",)
    stack, k = series.locate_instance(12)
    assert (stack.index, k) == (0, 2)
    assert series.locate_instance(999) is None


def test_plain_zarr_and_xarray_open_a_stack(store):
    (image,) = write_study(store)
    geometry = make_geometry()
    group = "studies/7/42/0"
    ds = xr.open_zarr(store, group=group, consolidated=False)
    assert ds["image"].dims == ("slice", "row", "col")
    assert ds["position"].dims == ("slice", "xyz")
    np.testing.assert_array_equal(ds["image"].values, image)
    np.testing.assert_array_equal(ds["instance_number"].values, geometry.instance_numbers)
    np.testing.assert_allclose(np.array(ds.attrs["affine"]), geometry.affine)
    array = zarr.open_array(store / group / "image", mode="r")
    np.testing.assert_allclose(np.array(array.attrs["affine"]), geometry.affine)
    assert array.metadata.dimension_names == ("slice", "row", "col")
    assert array.chunks == (5, 32, 40)  # image_chunks: equal chunks, rows and columns a multiple of 8
    assert array.shards == (5, 32, 40)  # one shard (one file) holding every chunk
    assert sorted(p.name for p in (store / group / "image").iterdir()) == ["c.0.0.0", "zarr.json"]
    root = zarr.open_group(store, mode="r")
    assert root.attrs["space"] == "LPS" and root.attrs["unit"] == "mm" and root.attrs["split"] == "train"


def test_small_arrays_rewritten_by_zarr_read_the_same(store):
    """A stack whose positions and instance numbers another tool rewrote (compressed, several chunks) is read
    through zarr instead of straight from the file, with the same values."""
    write_study(store)
    geometry = make_geometry()
    group = store / "studies/7/42/0"
    for name, values, dims in (("position", geometry.positions, ("slice", "xyz")),
                               ("instance_number", geometry.instance_numbers, ("slice",))):  # fmt: skip
        shutil.rmtree(group / name)
        zarr.create_array(group / name, data=np.asarray(values), chunks=(2,) + values.shape[1:],
                          dimension_names=dims, compressors=zarr.codecs.BloscCodec(cname="zstd"))  # fmt: skip
    stack = sd.open_dataset(store).study("7").series["42"].stacks[0]
    np.testing.assert_array_equal(stack.positions, geometry.positions)
    np.testing.assert_array_equal(stack.instance_numbers, geometry.instance_numbers)


def test_study_is_invisible_until_committed(store):
    writer = StudyWriter(store, "8")
    writer.add_series("1", description="x", role=None, series_uid="1")
    writer.add_stack("1", make_geometry(), np.zeros(make_geometry().shape, np.uint16))
    assert open_dataset(store).study_ids == []
    with pytest.raises(StoreError, match="not in"):
        open_dataset(store).study("8")
    writer.commit()
    assert open_dataset(store).study_ids == ["8"]


def test_leaving_the_writer_without_commit_removes_the_staging(store):
    with StudyWriter(store, "9") as writer:
        writer.add_series("1", description="x", role=None, series_uid="1")
    assert not any((store / STAGING).iterdir())
    assert open_dataset(store).study_ids == []


def test_clean_stale_removes_staging_and_incomplete_studies(store):
    write_study(store, "1")
    StudyWriter(store, "2")  # a worker killed while writing: its staging folder stays
    incomplete = store / "studies" / "3"
    incomplete.mkdir()
    (incomplete / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    removed = clean_stale(store)
    assert len(removed) == 2 and "studies/3" in removed
    assert complete_study_ids(store) == {"1"}
    assert not incomplete.exists() and not any((store / STAGING).iterdir())


def test_study_ids_sort_numerically_and_commit_refuses_overwrite(store):
    for sid in ("10", "9", "1.2.840.5"):
        write_study(store, sid)
    assert open_dataset(store).study_ids == ["9", "10", "1.2.840.5"]
    with pytest.raises(StoreError, match="already complete"):
        write_study(store, "9")


BAD_IDS = ["", ".", "..", "../x", "a/b", "/abs", "a\\b", "..\\x", "x\x00y", "x\ny", ".hidden", "__x"]
"""Ids that are not one plain path component (or are reserved names of Zarr)."""


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_are_refused_by_the_writer(store, bad):
    with pytest.raises(StoreError, match="cannot name"):
        StudyWriter(store, bad)
    with StudyWriter(store, "7") as writer, pytest.raises(StoreError, match="series id .* cannot name"):
        writer.add_series(bad, description="", role=None, series_uid="")
    assert not any((store / STAGING).iterdir())  # nothing written for the refused ids
    assert check_id("study id", "1.2.840.113619.2") == "1.2.840.113619.2"


def _bait(folder):
    """A folder outside ``studies/`` that a reader would take for a complete study with one series."""
    for node, attrs in ((folder, {"complete": True}), (folder / "42", {"description": "bait"})):
        node.mkdir(parents=True)
        (node / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attrs}))
    return folder


@pytest.mark.parametrize("how", ["parent", "absolute", "store root"])
def test_the_reader_never_reads_outside_studies(store, how):
    write_study(store)
    bait = _bait(store / "bait" if how == "store root" else store.parent / "bait")
    sid = {"parent": "../../bait", "absolute": str(bait), "store root": "../bait"}[how]
    assert (store / "studies" / sid).resolve() == bait.resolve()  # where the id would lead
    ds = open_dataset(store)
    with pytest.raises(StoreError, match="study id .* cannot name a store entry"):
        ds.study(sid)
    with pytest.raises(StoreError, match="cannot name a store entry"):
        Study(store, sid)
    with pytest.raises(StoreError, match="series id '..' cannot name a store entry"):
        Series(store, "7", "..")
    assert sid not in ds and ds.study("7").series["42"].stacks  # the store itself still reads


def test_spine_info_refuses_an_id_that_leaves_the_store(store, monkeypatch, capsys):
    from tests.helpers.cli_helpers import cli_error

    write_study(store)
    _bait(store.parent / "bait")
    err = cli_error(monkeypatch, capsys, ["info", str(store), "../../bait"])  # exit code 1
    assert err.startswith("error: study id '../../bait' cannot name a store entry") and "\n" not in err


def test_open_dataset_errors(tmp_path, store):
    with pytest.raises(StoreError, match="no Zarr store"):
        open_dataset(tmp_path / "missing.zarr")
    zarr.open_group(tmp_path / "other.zarr", mode="w")
    with pytest.raises(StoreError, match="not a spinedata store"):
        open_dataset(tmp_path / "other.zarr")
    with pytest.raises(StoreError, match="split"):
        create_or_open_store(store, split="test", source="x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f.txt").write_text("x")
    with pytest.raises(StoreError, match="not a spinedata store"):
        create_or_open_store(tmp_path / "full", split="train", source="x")


def test_tables_round_trip_and_missing_tables(store):
    with pytest.raises(StoreError, match="no labels table"):
        _ = open_dataset(store).labels
    frame = pd.DataFrame({"study_id": ["1", "22"], "x": [1.5, np.nan], "stack": np.array([0, -1], np.int64)})
    replace_table(store, "t", frame, "point")
    replace_table(store, "t", frame.iloc[:1], "point")  # replaced whole
    back = read_table(zarr.open_group(store, mode="r")["t"])
    assert list(back.columns) == ["study_id", "x", "stack"]
    assert back["study_id"].tolist() == ["1"] and back["x"].tolist() == [1.5]
    assert back["stack"].dtype == np.int64 and back["stack"].tolist() == [0]
    ds = xr.open_zarr(store, group="t", consolidated=False)
    assert ds["study_id"].dims == ("point",) and str(ds["study_id"].values[0]) == "1"


def test_ingest_lock_is_exclusive_and_taken_over_when_stale(store):
    with IngestLock(store):
        with pytest.raises(StoreError, match="another ingest"):
            IngestLock(store).__enter__()
    lock = store / ".ingest.lock"
    import socket

    lock.write_text(f"{socket.gethostname()} 999999999")  # a dead process
    with IngestLock(store):
        assert lock.read_text().split()[1] != "999999999"
    assert not lock.exists()



def test_rescaled_stack_keeps_integers_and_reads_back_the_float32_values(store):
    geometry = make_geometry()
    stored = np.random.default_rng(2).integers(0, 4000, geometry.shape).astype(np.uint16)
    writer = StudyWriter(store, "5")
    writer.add_series("1", description="x", role=None, series_uid="1")
    writer.add_stack("1", geometry, stored, rescale=(3.6668, -0.21))
    with pytest.raises(StoreError, match="stored integers"):
        writer.add_stack("1", geometry, stored.astype(np.float32), rescale=(3.6668, -0.21))
    writer.commit()
    (stack,) = open_dataset(store).study("5").series["1"].stacks
    expected = (stored.astype(np.float64) * 3.6668 - 0.21).astype(np.float32)  # as spinedata.dicom.read_stack
    assert stack.read().dtype == np.float32 and np.array_equal(stack.read(), expected)
    np.testing.assert_array_equal(stack.read((2, 4)), expected[2:4])
    assert zarr.open_array(store / stack.path / "image", mode="r").dtype == np.uint16


def test_a_table_is_the_same_bytes_in_a_folder_and_at_a_url(tmp_path):
    """One ``write_table`` writes both (a store at a URL once had a copy of its own)."""
    import uuid

    from spinedata.store.tables import write_table
    from tests.helpers.stores import local_files, stored_objects

    frame = {"study_id": np.array(["1", "22"], dtype=object), "x": np.array([1.5, -2.0]), "k": np.array([0, 3])}
    write_table(tmp_path / "t", frame, "point", {"note": "n"})
    url = f"memory://spine-{uuid.uuid4().hex[:8]}/t"
    write_table(store_location(url), frame, "point", {"note": "n"})
    assert stored_objects(url) == local_files(tmp_path / "t") and len(local_files(tmp_path / "t")) == 7


def test_write_arrays_puts_every_zarr_json_after_every_chunk_at_a_url(tmp_path, monkeypatch):
    """At a URL no array is visible (its ``zarr.json``) before all its chunks are stored; the bytes are those
    of a local folder."""
    import uuid

    from spinedata.store import fastwrite
    from tests.helpers.stores import local_files, stored_objects

    arrays = {"a": np.arange(10, dtype=np.int16), "b": np.array(["x", "yz"], dtype=object)}
    options = {"chunks": (4,), "dimension_names": ("i",)}
    fastwrite.write_arrays({tmp_path / name: data for name, data in arrays.items()}, **options)
    url = f"memory://spine-{uuid.uuid4().hex[:8]}/arrays"
    batches = []
    real = fastwrite.put_many
    monkeypatch.setattr(fastwrite, "put_many", lambda objects: (batches.append(sorted(p.name for p in objects)),
                                                                real(objects)))  # fmt: skip
    fastwrite.write_arrays({store_location(url) / name: data for name, data in arrays.items()}, **options)
    assert batches == [["c.0", "c.0", "c.1", "c.2"], ["zarr.json", "zarr.json"]]
    assert stored_objects(url) == local_files(tmp_path)


def test_remove_tree_ignores_only_a_missing_tree(tmp_path, monkeypatch):
    import uuid

    from spinedata.store import objectpath

    (tmp_path / "t/sub").mkdir(parents=True)
    (tmp_path / "t/sub/f").write_bytes(b"1")
    remote = store_location(f"memory://spine-{uuid.uuid4().hex[:8]}/s", writing=True)
    (remote / "t/sub/f").write_bytes(b"1")
    for folder in (tmp_path / "t", remote / "t"):
        objectpath.remove_tree(folder)
        assert not folder.exists()
        objectpath.remove_tree(folder)  # already gone: nothing to do
    (tmp_path / "u").mkdir()

    def refuse(path, ignore_errors=False, **kwargs):  # as a real failure would: swallowed when ignored
        if not ignore_errors:
            raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(objectpath.shutil, "rmtree", refuse)
    with pytest.raises(PermissionError):
        objectpath.remove_tree(tmp_path / "u")


def test_an_s3fs_without_package_metadata_is_one_line_error(monkeypatch):
    import importlib.metadata

    from spinedata.store.objectpath import check_conditional_puts

    real = importlib.metadata.version

    def version(name):
        if name == "botocore":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(StoreError, match=r"^cannot lock s3://b/x.zarr: botocore has no package metadata: .* "
                                         r"pip install -U 'spine\[cloud\]' \(botocore>=1\.35\.21\)$"):  # fmt: skip
        check_conditional_puts("s3://b/x.zarr")
