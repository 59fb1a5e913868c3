"""Writing a spinedata store: the root, whole studies (staged, then renamed into place), the lock.

A study is written by one process into ``.staging/<study_id>.<random>/`` as a Zarr group of its own, its
``complete`` attribute is set, and the folder is renamed to ``studies/<study_id>`` (atomic on one file
system). Readers list only studies under ``studies/`` whose ``complete`` is true, so an interrupted
writer (even ``kill -9``) leaves at most a staging folder that the next run removes.

A store at a URL (an object store: no rename) gets the same promise another way: a study's objects are
written in place under ``studies/<study_id>/``, and its own ``zarr.json`` (with ``complete: true``) only
after every other object of the study is stored, so a reader either finds that marker, and with it the
whole study, or no study. The lock is an object created by a conditional put (``If-None-Match: *``).


``complete_study_ids`` and ``read_root_attrs`` (shared with the reader) live in ``spinedata.store.layout``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np

from spinedata.errors import StoreError
from spinedata.geometry import StackGeometry
from spinedata.ids import check_id
from spinedata.store import layout as L
from spinedata.store._fast import write_array, write_group
from spinedata.store.fastwrite import array_files, group_document
from spinedata.store.layout import is_complete, read_root_attrs, study_markers
from spinedata.store.ngff import with_ngff
from spinedata.store.objectpath import Location, ObjectPath, put_many, remove_tree
from spinedata.store.scaling import ADD_OFFSET, SCALE_FACTOR
from spinedata.store.urls import store_location


def create_or_open_store(path: str | os.PathLike | ObjectPath, *, split: str, source: str) -> Location:
    """Create a new store at ``path`` (a folder or a URL; root attributes, ``studies`` group) or check an
    existing one.

    An existing store must be a spinedata store of the same ``split``; a non-empty folder (or key prefix)
    that is not a store is refused rather than written into.
    """
    root = store_location(path, writing=True)
    if root.exists():
        if (root / "zarr.json").is_file():
            attrs = read_root_attrs(root)
            if attrs.get(L.FORMAT_KEY) != L.FORMAT_VERSION:
                raise StoreError(
                    f"store {str(root)!r} has spinedata format {attrs.get(L.FORMAT_KEY)} (no chunk checksums); "
                    f"this version writes format {L.FORMAT_VERSION}: ingest into a new store"
                )
            if attrs.get("split") != split:
                raise StoreError(
                    f"store {str(root)!r} holds split {attrs.get('split')!r}, not {split!r}; "
                    "write each split into its own store"
                )
            if not (root / L.STUDIES / "zarr.json").is_file():
                write_group(root / L.STUDIES, {})
            return root
        if not root.is_dir() or any(root.iterdir()):
            raise StoreError(f"{str(root)!r} exists and is not a spinedata store; choose a new path or remove it")
    write_group(
        root, {L.FORMAT_KEY: L.FORMAT_VERSION, "space": L.SPACE, "unit": L.UNIT, "source": source, "split": split}
    )
    write_group(root / L.STUDIES, {})
    return root


class IngestLock:
    """Exclusive writer lock on a store: the file ``.ingest.lock`` holding host, pid and a random token.

    The lock file appears whole: the owner is written to a file of its own, which is then hard-linked to
    the lock's name (``os.link`` fails when the name exists), so a reader never sees an empty or partial
    lock. A lock whose process is gone (same host, no such pid) is taken over; the check and the takeover
    run under ``flock`` on the store's folder, so of several processes finding one stale lock exactly one
    replaces it (a lock of another host is never taken over: its process cannot be checked from here).

    On a store at a URL the lock is an object created whole by a conditional put (``If-None-Match: *``,
    fsspec's ``mode="create"``), which fails when the object exists; it is read back to catch a backend
    whose exclusive create is not atomic. A stale lock is replaced by the one process that creates the
    object ``.ingest.lock.takeover.<digest of the stale lock>`` the same way (deleted once done).
    """

    def __init__(self, root: str | os.PathLike | ObjectPath):
        self.root = store_location(root, writing=True)
        self.path = self.root / L.LOCK_FILE
        self.owner = f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex}"

    def _holder(self) -> str | None:
        """The lock file's text, or None when there is none."""
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    @staticmethod
    def _alive(holder: str) -> bool:
        """Whether the process named by a lock's text may still run (another host's: assumed so)."""
        fields = holder.split()
        if len(fields) not in (2, 3) or not fields[1].isdigit():
            return False  # not a lock this code writes (every version wrote host and pid before linking)
        if fields[0] != socket.gethostname():
            return True  # cannot tell: another machine may be writing
        try:
            os.kill(int(fields[1]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OverflowError):
            return True
        return True

    def _link(self) -> bool:
        """Create the lock file whole, holding ``owner``; False when a lock exists."""
        if isinstance(self.path, ObjectPath):
            if not self.path.create_exclusive(self.owner.encode()):
                return False
            if self._holder() != self.owner:
                raise StoreError(f"could not take the lock {self.path}: another ingest wrote it at the same time")
            return True
        temporary = self.root / f"{L.LOCK_FILE}.{uuid.uuid4().hex}"
        temporary.write_text(self.owner)
        try:
            os.link(temporary, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)

    def _refuse_live(self, holder: str | None) -> None:
        if holder is not None and self._alive(holder):
            raise StoreError(
                f"another ingest ({' '.join(holder.split()[:2])}) is writing this store; wait for it, "
                f"or remove {self.path} if that process is gone"
            )

    def __enter__(self) -> IngestLock:
        if self._link():
            return self
        stale = self._holder()
        self._refuse_live(stale)
        if stale is None:  # released meanwhile
            if self._link():
                return self
        else:
            with self._replacing(stale):
                holder = self._holder()  # again: only this process may replace ``stale`` now
                self._refuse_live(holder)
                if holder == stale:
                    self.path.unlink(missing_ok=True)
                if self._link():
                    return self
        raise StoreError(f"could not take the lock {self.path}; another ingest took it just now")

    @contextlib.contextmanager
    def _replacing(self, stale: str):
        """Inside, this is the one process replacing the lock ``stale``: under ``flock`` on a local store's
        folder; on a store at a URL while holding ``.ingest.lock.takeover.<digest of stale>``, an object
        created exclusively (deleted on leaving: whoever creates it later reads a lock other than ``stale``)."""
        if isinstance(self.root, Path):
            import fcntl

            fd = os.open(self.root, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock
            return
        marker = self.root / f"{L.LOCK_FILE}.takeover.{hashlib.sha256(stale.encode()).hexdigest()[:16]}"
        if not marker.create_exclusive(self.owner.encode()):
            raise StoreError(f"another ingest is taking over the stale lock {self.path}; wait for it, or remove "
                             f"{marker} and {self.path} if no ingest runs")  # fmt: skip
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        if self._holder() == self.owner:
            self.path.unlink(missing_ok=True)


def clean_stale(root: str | os.PathLike | ObjectPath, markers: dict[str, dict] | None = None) -> list[str]:
    """Remove what an interrupted run left (staging folders, studies without ``complete``); return their
    store-relative paths. Call only while holding the ``IngestLock``; ``markers``: ``study_markers`` of the
    store when already read. On a store at a URL a study without its marker is a key prefix holding some of
    its objects: they are deleted, as is any object under ``.staging/`` (a cluster's probe left by a killed
    ingest)."""
    root = store_location(root, writing=True)
    markers = study_markers(root) if markers is None else markers
    removed = []
    if isinstance(root, ObjectPath):
        removed = [f"{L.STAGING}/{entry.name}" for entry in sorted((root / L.STAGING).iterdir(), key=str)]
        if removed:
            (root / L.STAGING).remove_tree()
    else:
        staging = root / L.STAGING
        if staging.is_dir():
            for entry in sorted(staging.iterdir()):
                if entry.is_dir():
                    remove_tree(entry)
                else:
                    entry.unlink()
                removed.append(f"{L.STAGING}/{entry.name}")
    for name in sorted(markers):
        if markers[name].get(L.COMPLETE) is not True:
            remove_tree(root / L.STUDIES / name)
            removed.append(f"{L.STUDIES}/{name}")
    return removed


def remove_empty_staging(root: str | os.PathLike | ObjectPath) -> None:
    """Remove ``.staging/`` when no study is left in it (a finished ingest leaves no stray folder); a store
    at a URL has none."""
    root = store_location(root)
    if isinstance(root, ObjectPath):
        return
    staging = root / L.STAGING
    try:
        staging.rmdir()
    except FileNotFoundError:
        return
    except OSError as error:  # not empty: a study being written by another process, or left by a crash
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


class StudyWriter:
    """Writes one study into the staging folder of a store; ``commit`` makes it visible whole.

    Use as a context manager: leaving it without ``commit`` (an error) removes the staged study. Nodes are
    written with ``fastwrite`` (plain Zarr v3 files; zarr-python reads them back).

    On a store at a URL there is no staging folder: the study's objects go to their final keys
    (``studies/<id>/...``; each stack's objects together, concurrently), any leftover of an interrupted
    writer of the study removed first, and ``commit`` writes the study's ``zarr.json`` last: the study
    exists for readers from that one put on.
    """

    def __init__(self, root: str | os.PathLike | ObjectPath, study_id: str):
        self.root = store_location(root, writing=True)
        self.study_id = check_id("study id", study_id)
        self.final = self.root / L.STUDIES / study_id
        self.attrs: dict = {"study_id": study_id, L.COMPLETE: False}
        self.remote = isinstance(self.root, ObjectPath)
        self._pending: dict[ObjectPath, bytes] = {}
        self._committed = False
        if self.remote:
            if is_complete(self.final):
                raise StoreError(f"study {self.study_id!r} is already complete in {self.root}; not overwriting it")
            self.final.remove_tree()
            self.staging = self.final
        else:
            self.staging = self.root / L.STAGING / f"{study_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            self.staging.mkdir(parents=True)
            write_group(self.staging, self.attrs)
        self.n_stacks = 0
        self._stacks: dict[str, int] = {}

    def __enter__(self) -> StudyWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self.remote:
            shutil.rmtree(self.staging, ignore_errors=True)
        elif not self._committed:  # best effort: what stays is removed by the next run's clean_stale
            with contextlib.suppress(StoreError):
                self.final.remove_tree()

    def _group(self, folder: Location, attributes: dict) -> Location:
        if self.remote:
            self._pending[folder / "zarr.json"] = group_document(attributes)
            return folder
        return write_group(folder, attributes)

    def _array(self, folder: Location, data: np.ndarray, **options) -> None:
        if self.remote:
            self._pending.update((folder / name, payload) for name, payload in array_files(data, **options))
        else:
            write_array(folder, data, **options)

    def _flush(self) -> None:
        """Put the objects written so far (a store at a URL), all at once."""
        pending, self._pending = self._pending, {}
        put_many(pending)

    def add_series(self, series_id: str, *, description: str, role: str | None, series_uid: str) -> None:
        """Create the group of one series (before its stacks)."""
        check_id("series id", series_id)
        if series_id in self._stacks:
            raise StoreError(f"series {series_id!r} written twice in study {self.study_id!r}")
        self._group(
            self.staging / series_id, {"description": description, "role": role, "SeriesInstanceUID": series_uid}
        )
        self._stacks[series_id] = 0

    def add_stack(
        self, series_id: str, geometry: StackGeometry, image: np.ndarray, rescale: tuple[float, float] | None = None
    ) -> int:
        """Write one stack (image ``(slice,row,col)``, its geometry) as the next ``k`` of the series.

        ``rescale``: ``(slope, intercept)`` when ``image`` holds stored integers whose values are
        ``image * slope + intercept``; they are kept as CF ``scale_factor``/``add_offset``."""
        if image.shape != tuple(geometry.shape):
            raise StoreError(f"stack image of shape {image.shape} does not match its geometry {geometry.shape}")
        if series_id not in self._stacks:
            raise StoreError(f"add_series({series_id!r}) must come before its stacks")
        if rescale is not None and image.dtype.kind not in "iu":
            raise StoreError(f"a rescaled stack must hold stored integers, got {image.dtype}")
        k = self._stacks[series_id]
        attrs = geometry.to_attrs()
        # the group is also an NGFF 0.5 image of its ``image`` array (spinedata.store.ngff); the array keeps
        # the plain geometry attributes
        name = f"{self.study_id}/{series_id}/{k}"
        folder = self._group(self.staging / series_id / str(k), with_ngff(attrs, name))
        image_attrs = {**attrs, "coordinates": L.INSTANCE_NUMBER}
        if rescale is not None:
            image_attrs.update({SCALE_FACTOR: float(rescale[0]), ADD_OFFSET: float(rescale[1])})
        self._array(
            folder / L.IMAGE,
            image,
            chunks=L.image_chunks(image.shape),
            dimension_names=L.IMAGE_DIMS,
            attributes=image_attrs,
            blosc=L.IMAGE_BLOSC,
            shard=L.IMAGE_SHARDED,
        )
        n = image.shape[0]
        self._array(folder / L.INSTANCE_NUMBER, np.asarray(geometry.instance_numbers, np.int64), chunks=(n,),
                    dimension_names=L.IMAGE_DIMS[:1])  # fmt: skip
        self._array(folder / L.POSITION, np.asarray(geometry.positions, np.float64), chunks=(n, 3),
                    dimension_names=L.POSITION_DIMS)  # fmt: skip
        self._flush()
        self._stacks[series_id] = k + 1
        self.n_stacks += 1
        return k

    def commit(self, warnings: list[str] | tuple[str, ...] = (), **attributes) -> Location:
        """Mark the study complete (with its warnings and any extra JSON-able ``attributes``) and rename it
        into ``studies/``; an incomplete leftover of the same id is replaced. On a store at a URL: every
        object of the study is stored, then its ``zarr.json`` (the marker) is written."""
        self.attrs.update(attributes)
        self.attrs.update({L.WARNINGS: list(warnings), L.COMPLETE: True})
        if self.remote:
            self._flush()
            (self.final / "zarr.json").write_bytes(group_document(self.attrs))
            self._committed = True
            return self.final
        write_group(self.staging, self.attrs)
        if self.final.exists():
            if is_complete(self.final):
                raise StoreError(f"study {self.study_id!r} is already complete in {self.root}; not overwriting it")
            shutil.rmtree(self.final)
        self.final.parent.mkdir(exist_ok=True)
        os.rename(self.staging, self.final)
        return self.final
