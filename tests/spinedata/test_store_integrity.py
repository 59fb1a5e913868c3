"""Damage is detected: chunk checksums, missing chunks and shards, ``spine verify``, old stores, the lock."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import socket
import struct
import time

import google_crc32c
import numpy as np
import pandas as pd
import pytest
import zarr
from typer.testing import CliRunner

from cli.app import app
from spinedata.errors import StoreError
from spinedata.labels import LABEL_DTYPES, TARGET_COLUMNS, empty_labels
from spinedata.store import StudyWriter, create_or_open_store, open_dataset
from spinedata.store import writer as store_writer
from spinedata.store.arraymeta import has_checksums
from spinedata.store.fastwrite import write_array
from spinedata.store.integrity import DamagedStoreError
from spinedata.store.tables import replace_table
from spinedata.store.verify import verify_store
from spinedata.store.writer import IngestLock
from tests.spinedata.test_store import make_geometry, write_study

runner = CliRunner()
STACK = "studies/7/42/0"


@pytest.fixture
def store(tmp_path):
    root = create_or_open_store(tmp_path / "s.zarr", split="train", source="tests")
    write_study(root, geometries=[make_geometry(n=14, rows=150, cols=40)])  # 2 x 2 x 1 chunks in one shard
    labels = pd.concat([empty_labels().astype(object), pd.DataFrame({"study_id": ["7", "7"], "x": [3.5, 4.0]})])
    for column, dtype in LABEL_DTYPES.items():
        labels[column] = labels[column].fillna("" if dtype == "str" else -1).astype(dtype)
    replace_table(root, "labels", labels, "point")
    targets = pd.DataFrame({c: ["7"] if c == "study_id" else np.array([1], np.int8) for c in TARGET_COLUMNS})
    replace_table(root, "targets", targets, "study")
    return root


def flip(path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def stack(root):
    return open_dataset(root).study("7").series["42"].stacks[0]


def test_an_undamaged_store_verifies_and_every_chunk_carries_a_checksum(store):
    report = verify_store(store)
    assert report.ok and report.studies == 1 and report.arrays == 3 + len(LABEL_DTYPES) + len(TARGET_COLUMNS) and not report.notes
    meta = json.loads((store / STACK / "image" / "zarr.json").read_text())
    assert meta["codecs"][0]["configuration"]["codecs"][-1] == {"name": "crc32c"}
    raw = (store / STACK / "position" / "c.0.0").read_bytes()
    assert struct.unpack("<I", raw[-4:])[0] == google_crc32c.value(raw[:-4])
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 0 and "no damage found" in result.stdout


def test_a_flipped_byte_in_an_image_chunk_is_an_error_not_wrong_pixels(store):
    flip(store / STACK / "image" / "c.0.0.0", 50)
    with pytest.raises(DamagedStoreError, match=r"study 7, array 42/0/image: a chunk fails its checksum"):
        stack(store).read()
    with pytest.raises(ValueError, match="checksum"):  # plain zarr verifies it too
        zarr.open_array(store / STACK / "image", mode="r")[...]
    report = verify_store(store)
    assert report.damage == {"7": [f"{STACK}/image: a chunk fails its checksum (its bytes changed)"]}


@pytest.mark.parametrize("rescaled", [False, True])
def test_a_deleted_image_shard_is_an_error_not_zeros(tmp_path, rescaled):
    root = create_or_open_store(tmp_path / "s.zarr", split="test", source="tests")
    geometry = make_geometry()
    writer = StudyWriter(root, "7")
    writer.add_series("42", description="x", role=None, series_uid="1")
    writer.add_stack("42", geometry, np.ones(geometry.shape, np.uint16), rescale=(0.5, 3.0) if rescaled else None)
    writer.commit()
    (root / STACK / "image" / "c.0.0.0").unlink()
    with pytest.raises(DamagedStoreError, match=r"study 7, array 42/0/image: shard c.0.0.0 missing; `spine verify"):
        stack(root).read((0, 2))
    with pytest.raises(DamagedStoreError, match="missing"):
        _ = stack(root).image
    result = runner.invoke(app, ["info", str(root)])
    assert result.exit_code == 0 and "damage: study 7: studies/7/42/0/image: shard c.0.0.0 missing" in result.stdout


def test_a_chunk_left_out_of_a_shard_index_is_missing(store):
    """A shard whose index says a chunk is absent (as zarr-python writes an all-fill chunk), index checksum
    made right: the chunk is missing, since every chunk is written."""
    shard = store / STACK / "image" / "c.0.0.0"
    data = bytearray(shard.read_bytes())
    n = 2 * 2 * 1
    index = np.frombuffer(bytes(data[-(16 * n + 4) : -4]), "<u8").copy().reshape(n, 2)
    index[3] = 2**64 - 1
    raw = index.tobytes()
    shard.write_bytes(bytes(data[: -(16 * n + 4)]) + raw + struct.pack("<I", google_crc32c.value(raw)))
    with pytest.raises(DamagedStoreError, match="1 of its 4 chunks missing"):
        stack(store).read()
    flip(shard, len(data) - 10)  # now the index itself
    assert "index checksum mismatch" in verify_store(store).damage["7"][0]


def test_all_fill_chunks_are_written_and_read_back(tmp_path):
    root = create_or_open_store(tmp_path / "s.zarr", split="train", source="tests")
    geometry = make_geometry(n=14, rows=150)
    write_study(root, images=[np.zeros(geometry.shape, np.uint16)], geometries=[geometry])
    np.testing.assert_array_equal(stack(root).read(), 0)
    index = (root / STACK / "image" / "c.0.0.0").read_bytes()[-(16 * 4 + 4) : -4]
    assert not np.any(np.frombuffer(index, "<u8") == 2**64 - 1)
    write_array(tmp_path / "zeros", np.zeros((4, 3)), chunks=(2, 3), dimension_names=("a", "b"))
    assert sorted(p.name for p in (tmp_path / "zeros").iterdir()) == ["c.0.0", "c.1.0", "zarr.json"]


@pytest.mark.parametrize("how", ["delete", "flip"])
def test_damaged_positions_and_instance_numbers_are_errors(store, how):
    for name, key in (("position", "c.0.0"), ("instance_number", "c.0")):
        path = store / STACK / name / key
        backup = path.read_bytes()
        path.unlink() if how == "delete" else flip(path, 5)
        problem = "missing" if how == "delete" else "fails its checksum"
        with pytest.raises(DamagedStoreError, match=rf"study 7, array 42/0/{name}: chunk {key} {problem}"):
            _ = stack(store).positions
        assert verify_store(store).damage["7"][0].startswith(f"{STACK}/{name}: ")
        path.write_bytes(backup)
    assert verify_store(store).ok


@pytest.mark.parametrize(("table", "column"), [("labels", "x"), ("labels", "study_id"), ("targets", "study_id")])
def test_damaged_tables_are_errors(store, table, column):
    (store / table / column / "c.0").unlink()
    with pytest.raises(DamagedStoreError, match=rf"table {table}, column {column}: chunk c.0 missing"):
        _ = getattr(open_dataset(store), table)
    result = runner.invoke(app, ["verify", str(store), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["damage"] == {table: [f"{table}/{column}: chunk c.0 missing"]}
    info = runner.invoke(app, ["info", str(store)])
    assert info.exit_code == 0 and f"table {table}, column {column}: chunk c.0 missing" in info.stdout


def test_a_format_1_store_reads_as_before_and_is_noted(tmp_path, monkeypatch):
    """A store written before checksums (format 1): read, a missing chunk as the fill value as before;
    ``spine info`` and ``spine verify`` say it predates checksums; ingest refuses to add to it."""
    monkeypatch.setattr(store_writer, "write_array", functools.partial(write_array, checksum=False))
    root = create_or_open_store(tmp_path / "old.zarr", split="test", source="tests")
    meta = json.loads((root / "zarr.json").read_text())
    meta["attributes"]["spinedata_format"] = 1
    (root / "zarr.json").write_text(json.dumps(meta))
    (image,) = write_study(root)
    assert not has_checksums(json.loads((root / STACK / "image" / "zarr.json").read_text()))
    np.testing.assert_array_equal(stack(root).read(), image)
    report = verify_store(root)
    assert report.ok and report.format == 1 and "before chunk checksums" in report.notes[0]
    info = runner.invoke(app, ["info", str(root)])
    assert info.exit_code == 0 and "predates chunk checksums" in info.stdout
    with pytest.raises(StoreError, match="format 1 .* ingest into a new store"):
        create_or_open_store(root, split="test", source="tests")
    (root / STACK / "image" / "c.0.0.0").unlink()
    np.testing.assert_array_equal(stack(root).read(), 0)  # format 1: no way to tell


def _take_lock(root, barrier, results) -> None:
    barrier.wait()
    try:
        with IngestLock(root):
            results.put(os.getpid())
            barrier.wait()  # hold it until every process has tried
            return
    except StoreError:
        results.put(None)
    barrier.wait()


@pytest.mark.parametrize("stale", [False, True])
def test_exactly_one_of_many_processes_takes_the_lock(tmp_path, stale):
    """20 trials of 6 processes starting together (on a stale lock of a dead process when ``stale``): in
    each exactly one holds the lock, and none sees a lock without its owner."""
    context = multiprocessing.get_context("fork")
    n, start = 6, time.monotonic()
    for trial in range(20):
        root = tmp_path / f"t{trial}"
        root.mkdir()
        if stale:
            (root / ".ingest.lock").write_text(f"{socket.gethostname()} 999999999")
        barrier, results = context.Barrier(n), context.Queue()
        processes = [context.Process(target=_take_lock, args=(root, barrier, results)) for _ in range(n)]
        for process in processes:
            process.start()
        holders = [results.get(timeout=30) for _ in range(n)]
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
        assert sum(h is not None for h in holders) == 1, holders
        assert not (root / ".ingest.lock").exists()
        assert sorted(p.name for p in root.iterdir()) == []  # no temporary owner files left
    assert time.monotonic() - start < 120


def test_a_lock_appears_whole(store):
    with IngestLock(store) as lock:
        host, pid, token = (store / ".ingest.lock").read_text().split()
        assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and token in lock.owner
        with pytest.raises(StoreError, match=f"another ingest \\({host} {pid}\\)"):
            IngestLock(store).__enter__()
