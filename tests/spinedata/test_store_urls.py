"""Stores at URLs (issue #18, "Any store URL"): ``s3://`` against a local S3 server (moto's, real HTTP),
``file://``, ``memory://`` and ``zip://`` (read-only), read through ``open_dataset(URL)`` and written by
``ingest``; an interrupted S3 ingest resumes; the lock holds on S3."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from spinedata.errors import ExtraNotInstalled, StoreError
from spinedata.ingest import ingest
from spinedata.store import create_or_open_store, open_dataset
from spinedata.store.urls import store_location
from spinedata.store.verify import verify_store
from spinedata.store.writer import IngestLock
from tests.helpers.stores import assert_same_store, copy_store, local_files, stored_objects

REPO = Path(__file__).resolve().parents[2]


def test_an_s3_ingest_is_the_local_ingest_object_for_file(synth_dataset, synth_store, s3_bucket):
    url = f"s3://{s3_bucket}/train.zarr"
    result = ingest(synth_dataset, url, workers=2)
    assert (result.n_written, result.n_complete, str(result.store)) == (3, 3, url)
    assert str(result.report) == f"{url}/ingest_report.csv"
    # every zarr.json, chunk and shard (and the report) byte for byte; no lock or staging left behind
    assert stored_objects(url) == local_files(synth_store)
    dataset = open_dataset(url)
    assert str(dataset.path) == url and repr(dataset).startswith(f"Dataset({url!r}")
    assert_same_store(open_dataset(synth_store), dataset)
    stack = dataset.study(dataset.study_ids[0]).series_with_role("Sagittal T2/STIR")[0].stacks[0]
    np.testing.assert_array_equal(stack.image.values, stack.read())  # xarray through zarr's FsspecStore


def test_a_damaged_object_is_an_error_not_data(small_store, s3_bucket):
    import fsspec

    url = f"s3://{s3_bucket}/copy.zarr"
    copy_store(small_store[1], url)  # a store copied with any tool (aws s3 sync ...) reads the same
    fs, base = fsspec.url_to_fs(url)
    dataset = open_dataset(url)
    stack = dataset.study(dataset.study_ids[0]).series_with_role("Sagittal T2/STIR")[0].stacks[0]
    shard = f"{base}/{stack.path}/image/c.0.0.0"
    fs.rm_file(shard)
    with pytest.raises(StoreError, match=r"damaged store 's3://.*image: shard c\.0\.0\.0 missing"):
        open_dataset(url).study(stack.study_id).series[stack.series_id].stacks[0].read()
    report = verify_store(url)
    assert not report.ok and any("shard c.0.0.0 missing" in p for p in report.damage[stack.study_id])


def test_storage_options_give_the_endpoint_and_credentials(small_store, s3_bucket, s3_endpoint, monkeypatch):
    import s3fs

    url = f"s3://{s3_bucket}/train.zarr"
    copy_store(small_store[1], url)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    s3fs.S3FileSystem.clear_instance_cache()
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    assert_same_store(open_dataset(small_store[1]), open_dataset(url, storage_options=options))


def test_file_memory_and_zip_urls_open(synth_dataset, synth_store, tmp_path):
    expected = open_dataset(synth_store)
    by_file_url = open_dataset(synth_store.as_uri())
    assert by_file_url.path == synth_store  # a file:// URL is a local path: the fast reader
    assert_same_store(expected, by_file_url)

    memory = f"memory://spine-{uuid.uuid4().hex[:8]}/train.zarr"
    result = ingest(synth_dataset, memory)  # runs in this process (memory:// is this process's)
    assert result.n_written == 3 and stored_objects(memory) == local_files(synth_store)
    assert_same_store(expected, open_dataset(memory))

    flat = shutil.make_archive(str(tmp_path / "flat"), "zip", root_dir=synth_store)  # the store at its root
    nested = shutil.make_archive(str(tmp_path / "nested"), "zip", root_dir=synth_store.parent,
                                 base_dir=synth_store.name)  # fmt: skip
    for url in (f"zip://{flat}", f"zip://{synth_store.name}::file://{nested}"):
        assert_same_store(expected, open_dataset(url))
        assert verify_store(url).ok
    with pytest.raises(StoreError, match="zip:// stores are read-only"):
        ingest(synth_dataset, f"zip://{flat}", workers=1)


KILLED_INGEST = textwrap.dedent(
    """
    import os, signal, sys
    from spinedata.store import writer

    put_many, studies = writer.put_many, []

    def put_half_then_die(objects):  # the second study: half of its first stack stored, then kill -9
        key = next(iter(objects)).key if objects else ""  # studies/<id>/...
        if key.startswith("studies/") and key.split("/")[1] not in studies:
            studies.append(key.split("/")[1])
        if len(studies) == 2:
            put_many(dict(list(objects.items())[: len(objects) // 2]))
            os.kill(os.getpid(), signal.SIGKILL)
        put_many(objects)

    writer.put_many = put_half_then_die
    from spinedata.ingest import ingest
    ingest(sys.argv[1], sys.argv[2], workers=1)
    """
)


def test_an_interrupted_s3_ingest_resumes(small_store, s3_bucket):
    import fsspec

    data, local = small_store
    url = f"s3://{s3_bucket}/train.zarr"
    run = subprocess.run([sys.executable, "-c", KILLED_INGEST, str(data), url], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr
    fs, base = fsspec.url_to_fs(url, use_listings_cache=False)
    assert fs.exists(f"{base}/.ingest.lock")  # left by the killed process
    complete = open_dataset(url).study_ids
    assert len(complete) == 1  # readers see only the study whose marker was written
    partial = [p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/studies") if fs.isdir(p)]
    (torn,) = set(partial) - set(complete)
    assert fs.find(f"{base}/studies/{torn}") and not fs.exists(f"{base}/studies/{torn}/zarr.json")

    result = ingest(data, url, workers=1)  # takes over the dead process's lock, cleans, resumes
    assert (result.n_already, result.n_written) == (1, 1) and result.removed_stale == [f"studies/{torn}"]
    assert stored_objects(url) == local_files(local)


def test_a_second_ingest_into_a_locked_s3_store_is_refused(small_store, s3_bucket):
    data = small_store[0]
    url = f"s3://{s3_bucket}/train.zarr"
    create_or_open_store(url, split="train", source="tests")
    lock = store_location(url) / ".ingest.lock"
    with IngestLock(url):  # an ingest of this host that is alive (this process)
        with pytest.raises(StoreError, match=r"another ingest \(\S+ \d+\) is writing this store"):
            ingest(data, url, workers=1)
        assert not lock.create_exclusive(b"someone else")  # the conditional put fails: the object exists
        with pytest.raises(StoreError, match="another ingest"):
            IngestLock(url).__enter__()
    assert not lock.exists()  # released
    lock.write_bytes(b"another-host 4242 token")  # a lock of another machine is never taken over
    with pytest.raises(StoreError, match=r"another ingest \(another-host 4242\)"):
        ingest(data, url, workers=1)
    lock.unlink()
    assert ingest(data, url, workers=1).n_written == 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://bucket/x.zarr", "unknown store protocol foo://"),
        ("s3://", "names no bucket: write s3://BUCKET/PATH.zarr"),
        ("zip:///no/such.zip", "no zip file at '/no/such.zip'"),
        ("memory://spine-none/x.zarr", "no Zarr store at 'memory://spine-none/x.zarr'"),
    ],
)
def test_urls_that_cannot_work_are_one_line_store_errors(url, expected):
    with pytest.raises(StoreError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        open_dataset(url)


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if not installed
    with pytest.raises(ExtraNotInstalled, match=r"^the store s3://bucket/x\.zarr needs the cloud extra: "
                                                r"pip install 'spine\[cloud\]' \(s3fs is not installed\)$"):  # fmt: skip
        open_dataset("s3://bucket/x.zarr")
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(ExtraNotInstalled, match=r"gs://b/x\.zarr needs the gcs extra: pip install 'spine\[gcs\]' "
                                                r"\(gcsfs is not installed\)$"):  # fmt: skip
        open_dataset("gs://b/x.zarr")
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ExtraNotInstalled, match=r"pip install 'spine\[cloud\]' \(fsspec is not installed\)$"):
        open_dataset("memory://x.zarr")


def test_an_s3fs_that_would_drop_the_lock_condition_is_refused(s3_bucket, monkeypatch):
    import importlib.metadata

    url = f"s3://{s3_bucket}/train.zarr"
    create_or_open_store(url, split="train", source="tests")
    real = importlib.metadata.version
    for package, old in (("s3fs", "2024.10.0"), ("botocore", "1.35.20")):
        monkeypatch.setattr(importlib.metadata, "version", lambda name, p=package, o=old: o if name == p else real(name))
        with pytest.raises(StoreError, match=rf"{package} {old} cannot create an object exclusively .*"
                                             rf"pip install -U 'spine\[cloud\]' \({package}>="):  # fmt: skip
            IngestLock(url).__enter__()
        assert not (store_location(url) / ".ingest.lock").exists()  # nothing written


def test_file_urls_are_percent_decoded_and_local_only(small_store, tmp_path):
    folder = tmp_path / "scans of ré é" / "train #1.zarr"
    shutil.copytree(small_store[1], folder)
    uri = folder.as_uri()
    assert "%20" in uri and "%C3%A9" in uri and "%231" in uri
    for url in (uri, uri.replace("file://", "file://localhost"), uri + "/"):
        assert store_location(url) == folder
    assert open_dataset(uri).study_ids == open_dataset(small_store[1]).study_ids
    assert store_location("file:///") == Path("/")
    with pytest.raises(StoreError, match=r"^file URL 'file://server/share/x\.zarr' names the host 'server'; "
                                         r"write file:///ABSOLUTE/PATH"):  # fmt: skip
        store_location("file://server/share/x.zarr")
    with pytest.raises(StoreError, match=r"has a query or fragment; percent-encode '\?' as %3F and '#' as %23$"):
        store_location("file:///data/train#1.zarr")


def _race(url: str, n: int = 2) -> tuple[list[IngestLock], list[str]]:
    """``n`` threads take ``IngestLock(url)`` at once; each one's outcome: ``"won"`` or its error."""
    barrier, locks, outcomes = threading.Barrier(n), [IngestLock(url) for _ in range(n)], [""] * n

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            locks[i].__enter__()
            outcomes[i] = "won"
        except StoreError as error:
            outcomes[i] = str(error)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return locks, outcomes


def test_of_two_concurrent_lock_attempts_on_s3_exactly_one_wins(s3_bucket):
    url = f"s3://{s3_bucket}/train.zarr"
    create_or_open_store(url, split="train", source="tests")
    lock = store_location(url) / ".ingest.lock"
    where = re.escape(str(lock))
    busy = rf"another ingest \({socket.gethostname()} {os.getpid()}\) is writing this store; wait for it, or " \
           rf"remove {where} if that process is gone"  # fmt: skip
    taking_over = rf"another ingest is taking over the stale lock {where}; wait for it, or remove {where}" \
                  rf"\.takeover\.[0-9a-f]{{16}} and {where} if no ingest runs"  # fmt: skip
    just_now = rf"could not take the lock {where}; another ingest took it just now"  # released, then taken again
    for stale in (None, f"{socket.gethostname()} 999999999 token", f"{socket.gethostname()} 999999998 token"):
        if stale is not None:  # left by an ingest of this host that died: taken over by exactly one
            lock.write_bytes(stale.encode())
        locks, outcomes = _race(url)
        assert outcomes.count("won") == 1, outcomes
        (refused,) = [o for o in outcomes if o != "won"]
        assert re.fullmatch(f"{busy}|{just_now}" if stale is None else f"{busy}|{taking_over}|{just_now}",
                            refused), refused  # fmt: skip
        locks[outcomes.index("won")].__exit__(None, None, None)
        assert sorted(p.name for p in store_location(url).iterdir()) == ["studies", "zarr.json"]  # nothing left


def test_a_stale_s3_lock_is_taken_over_in_the_store_not_in_a_local_file(s3_bucket, tmp_path, monkeypatch):
    import hashlib
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # once a shared /tmp file, open to other users' links
    url = f"s3://{s3_bucket}/train.zarr"
    create_or_open_store(url, split="train", source="tests")
    lock = store_location(url) / ".ingest.lock"
    stale = f"{socket.gethostname()} 999999999 token"
    lock.write_bytes(stale.encode())
    with IngestLock(url):
        assert lock.read_text() != stale
    assert list(tmp_path.iterdir()) == [] and not lock.exists()
    # a takeover that died holding its marker: the next ingest says what to remove
    lock.write_bytes(stale.encode())
    marker = lock.parent / f".ingest.lock.takeover.{hashlib.sha256(stale.encode()).hexdigest()[:16]}"
    marker.write_bytes(b"a takeover that died")
    with pytest.raises(StoreError, match=rf"^another ingest is taking over the stale lock {lock}; wait for it, "
                                         rf"or remove {marker} and {lock} if no ingest runs$"):  # fmt: skip
        IngestLock(url).__enter__()


def test_a_resumed_s3_ingest_reads_each_study_marker_once(small_store, s3_bucket, monkeypatch):
    import collections

    import s3fs

    data = small_store[0]
    url = f"s3://{s3_bucket}/train.zarr"
    assert ingest(data, url, workers=1).n_written == 2
    reads: collections.Counter[str] = collections.Counter()
    real = s3fs.S3FileSystem._cat_file

    async def counted(self, path, *args, **kwargs):
        reads[path] += 1
        return await real(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", counted)
    s3fs.S3FileSystem.clear_instance_cache()  # new filesystems: their cat_file is the counted one
    result = ingest(data, url, workers=1)  # resumes: both studies complete, labels resolved from the store
    assert (result.n_already, result.n_written, result.n_complete, result.n_labels) == (2, 0, 2, 2)
    markers = {path: n for path, n in reads.items() if re.search(r"/studies/[^/]+/zarr\.json$", path)}
    assert len(markers) == 2 and set(markers.values()) == {1}, markers  # was 6 each (2026-12)
