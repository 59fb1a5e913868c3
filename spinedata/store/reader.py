"""Reading a spinedata store: ``open_dataset`` -> Dataset -> Study -> Series -> Stack (see ``docs/design.md``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinedata.errors import StoreError, import_extra
from spinedata.geometry import Projection, StackGeometry
from spinedata.ids import check_id
from spinedata.labels import LABEL_COLUMNS, TARGET_COLUMNS, empty_labels, empty_targets
from spinedata.store import layout as L
from spinedata.store.integrity import ZARR_READ_ERRORS, check_array, damaged, read_array, zarr_problem
from spinedata.store.layout import complete_study_ids, read_root_attrs
from spinedata.store.objectpath import Location, ObjectPath, prefetched, subfolders, zarr_store
from spinedata.store.scaling import ADD_OFFSET, SCALE_FACTOR, decode_scaled
from spinedata.store.tables import COLUMNS_ATTR
from spinedata.store.urls import store_location

if TYPE_CHECKING:
    import pandas as pd
    import xarray
    import zarr

# zarr, pandas and xarray are imported where they are first needed: together they cost about a second of
# start-up, and `spine ingest` (which reads stack geometry to resolve labels) needs none of them.


def _sort_key(study_id: str) -> tuple:
    """Numeric ids in numeric order, then other ids (e.g. DICOM UIDs) as text."""
    return (0, int(study_id), "") if study_id.isdigit() else (1, 0, study_id)


def _metadata(folder: Location) -> dict:
    """The ``zarr.json`` of a node (``{}`` when there is none)."""
    try:
        return json.loads((folder / "zarr.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise StoreError(f"cannot read {folder / 'zarr.json'}: {error}") from error


def _attributes(folder: Location) -> dict:
    """A node's attributes, read from its ``zarr.json`` (groups are plain JSON; arrays go through zarr)."""
    return _metadata(folder).get("attributes", {})


def _group_children(folder: Location) -> dict[str, dict]:
    """The child groups of a group folder: name -> attributes (each ``zarr.json`` read once; a store at a
    URL fetches them at once)."""
    children = subfolders(folder)
    with prefetched([child / "zarr.json" for _, child in children]):
        metadata = {name: _metadata(child) for name, child in children}
    return {name: meta.get("attributes", {}) for name, meta in metadata.items() if meta.get("node_type") == "group"}


def _child_groups(folder: Location) -> list[str]:
    """Names of the child groups of a group folder."""
    return list(_group_children(folder))


class Stack:
    """One stack of a series: a regular ``(slice,row,col)`` grid with its geometry (LPS mm)."""

    def __init__(
        self, store_root: Location, study_id: str, series_id: str, index: int, attrs: dict, *, checked: bool = True,
        chunks=None,
    ):  # fmt: skip
        self.store_root = store_root
        self.checked = checked
        """Whether every chunk must be there (stores of format 2 on): a missing one is damage, not zeros."""
        self.chunks = chunks
        """None: ``image`` reads on access; else ``image`` is Dask-backed with these chunks (``open_dataset``)."""
        self.path = f"{L.STUDIES}/{study_id}/{series_id}/{index}"
        """Store-relative path of the stack's group (for plain zarr/xarray)."""
        self.study_id = study_id
        self.series_id = series_id
        self.index = index
        self.attrs = attrs
        """The stack group's attributes (``StackGeometry.to_attrs()``)."""

    @cached_property
    def _image(self) -> zarr.Array:
        """The image array, opened once its chunks are known to be all there (``DamagedStoreError``)."""
        import zarr

        folder = self.store_root / self.path / L.IMAGE
        check_array(self.store_root, folder, every_chunk=self.checked)
        try:
            return zarr.open_array(zarr_store(folder), mode="r")
        except ZARR_READ_ERRORS as error:
            raise damaged(self.store_root, folder, zarr_problem(error)) from error

    def __repr__(self) -> str:
        return f"Stack({self.path!r}, shape={self.shape}, flags={list(self.flags)})"

    @cached_property
    def geometry(self) -> StackGeometry:
        """The stack's ``StackGeometry`` (affine, real per-slice positions, instance numbers, flags)."""
        folder = self.store_root / self.path
        names = (L.POSITION, L.INSTANCE_NUMBER)
        # small single-chunk arrays (c.0.0 and c.0): a store at a URL fetches the four objects at once
        with prefetched([folder / n / f for n, c in zip(names, ("c.0.0", "c.0"), strict=True) for f in ("zarr.json", c)]):
            positions, instance_numbers = (
                read_array(self.store_root, folder / name, every_chunk=self.checked) for name in names
            )
        return StackGeometry.from_attrs(self.attrs, positions, instance_numbers)

    @cached_property
    def image(self) -> xarray.DataArray:
        """The pixels as a lazy ``xarray.DataArray``, dims ``(slice,row,col)``, coord ``instance_number``,
        geometry in ``attrs``; values are read from Zarr on access (``.values``, ``.isel(...)``). A stack
        stored with CF ``scale_factor``/``add_offset`` is decoded by xarray to float64 (``read`` gives the
        float32 values ingest read). A missing chunk raises ``DamagedStoreError`` here; a damaged one raises
        zarr's checksum error when it is read. Opened with ``open_dataset(path, chunks=...)``, the data is a
        Dask array of those chunks instead (lazy, read in parallel by Dask), with the same values, coords and
        attrs."""
        import xarray as xr  # imported on first use: it costs ~0.5 s and ingest workers never need it

        _ = self._image  # every chunk there

        root = self.store_root
        store = str(root) if isinstance(root, Path) else zarr_store(root)
        ds = xr.open_zarr(store, group=self.path, consolidated=False, chunks=self.chunks)
        return ds[L.IMAGE]

    @property
    def affine(self) -> np.ndarray:
        """``(4,4)`` voxel ``(slice,row,col,1)`` -> LPS mm."""
        return self.geometry.affine

    @property
    def instance_numbers(self) -> np.ndarray:
        """``(slice,)`` int64 InstanceNumber of each slice (-1 where the file had none)."""
        return self.geometry.instance_numbers

    @property
    def positions(self) -> np.ndarray:
        """``(slice,3)`` each slice's ImagePositionPatient, LPS mm."""
        return self.geometry.positions

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.attrs["shape"])

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(self.attrs.get("flags", ()))

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """``(drow, dcol)`` mm."""
        return self.geometry.pixel_spacing

    @property
    def slice_spacing(self) -> float:
        return self.geometry.slice_spacing

    def voxel_to_world(self, ijk) -> np.ndarray:
        """``(...,3)`` voxel ``(slice,row,col)`` -> ``(...,3)`` LPS mm."""
        return self.geometry.voxel_to_world(ijk)

    def world_to_voxel(self, xyz) -> np.ndarray:
        """``(...,3)`` LPS mm -> ``(...,3)`` float ``(slice,row,col)``."""
        return self.geometry.world_to_voxel(xyz)

    def project(self, xyz) -> Projection:
        """Nearest slice, row/col and signed distance of one LPS point ``(3,)``."""
        return self.geometry.project(xyz)

    def slice_of_instance(self, instance_number: int) -> int | None:
        """Index of the slice holding ``instance_number``, or None."""
        hits = np.flatnonzero(self.instance_numbers == int(instance_number))
        return int(hits[0]) if len(hits) else None

    def read(self, slices: slice | tuple[int, int] | None = None) -> np.ndarray:
        """Read the pixels ``(n, rows, cols)``: all slices, or a range (``slice(a, b)`` or ``(a, b)``).

        The values ingest read (RescaleSlope/Intercept applied): a stack stored as integers with CF
        ``scale_factor``/``add_offset`` comes back as the same float32 values, bit for bit.
        ``DamagedStoreError`` (one line: study, array, problem) for a missing chunk or shard, or a chunk
        failing its checksum."""
        if slices is None:
            selection = slice(None)
        elif isinstance(slices, slice):
            selection = slices
        else:
            start, stop = slices
            selection = slice(start, stop)
        try:
            values = self._image[selection]
        except ZARR_READ_ERRORS as error:
            raise damaged(self.store_root, self.store_root / self.path / L.IMAGE, zarr_problem(error)) from error
        attrs = self._image.attrs
        if SCALE_FACTOR in attrs or ADD_OFFSET in attrs:
            return decode_scaled(values, float(attrs.get(SCALE_FACTOR, 1.0)), float(attrs.get(ADD_OFFSET, 0.0)))
        return values

    # exports (spinedata.export; the libraries are the `interop` extra, imported on first use)
    def to_nifti(self, *, resample: bool = False):
        """This stack as a ``nibabel.Nifti1Image`` (RAS); see ``spinedata.export.to_nifti``."""
        from spinedata.export import to_nifti

        return to_nifti(self, resample=resample)

    def to_sitk(self, *, resample: bool = False):
        """This stack as a ``SimpleITK.Image`` (LPS); see ``spinedata.export.to_sitk``."""
        from spinedata.export import to_sitk

        return to_sitk(self, resample=resample)

    def to_torchio(self, *, resample: bool = False):
        """This stack as a ``torchio.ScalarImage`` (RAS); see ``spinedata.export.to_torchio``."""
        from spinedata.export import to_torchio

        return to_torchio(self, resample=resample)

    def to_monai(self, *, resample: bool = False):
        """This stack as a ``monai.data.MetaTensor`` (RAS); see ``spinedata.export.to_monai``."""
        from spinedata.export import to_monai

        return to_monai(self, resample=resample)


class Series:
    """One DICOM series of a study: description, role and its stacks."""

    def __init__(self, store_root: Location, study_id: str, series_id: str, *, checked: bool = True,
                 attrs: dict | None = None, chunks=None):  # fmt: skip
        folder = store_root / L.STUDIES / check_id("study id", study_id) / check_id("series id", series_id)
        attrs = _attributes(folder) if attrs is None else attrs
        self.series_id = series_id
        self.study_id = study_id
        self.description: str = attrs.get("description", "")
        self.role: str | None = attrs.get("role")
        self.series_instance_uid: str = attrs.get("SeriesInstanceUID", "")
        children = _group_children(folder)
        keys = sorted((k for k in children if k.isdigit()), key=int)
        self.stacks: list[Stack] = [
            Stack(store_root, study_id, series_id, int(k), children[k], checked=checked, chunks=chunks)
            for k in keys
        ]

    def __repr__(self) -> str:
        return f"Series({self.series_id!r}, {self.description!r}, role={self.role!r}, stacks={len(self.stacks)})"

    def locate_instance(self, instance_number: int) -> tuple[Stack, int] | None:
        """``(stack, slice index)`` of the image with ``instance_number``, or None when no stack holds it."""
        for stack in self.stacks:
            index = stack.slice_of_instance(instance_number)
            if index is not None:
                return stack, index
        return None


class Study:
    """One complete study: its series (``dict`` series id -> Series) and ingest warnings."""

    def __init__(self, store_root: Location, study_id: str, *, checked: bool = True, chunks=None,
                 attrs: dict | None = None):  # fmt: skip
        self.study_id = check_id("study id", study_id)
        self.path = f"{L.STUDIES}/{study_id}"
        folder = store_root / self.path
        attrs = _attributes(folder) if attrs is None else attrs  # its marker, unless the caller read it
        self.warnings: list[str] = list(attrs.get(L.WARNINGS, []))
        children = _group_children(folder)
        self.series: dict[str, Series] = {
            sid: Series(store_root, study_id, sid, checked=checked, attrs=children[sid], chunks=chunks)
            for sid in sorted(children, key=_sort_key)
        }

    def __repr__(self) -> str:
        return f"Study({self.study_id!r}, series={list(self.series)})"

    def series_with_role(self, role: str) -> list[Series]:
        """The study's series of one role (e.g. ``'Sagittal T2/STIR'``), in series id order."""
        return [s for s in self.series.values() if s.role == role]


class Dataset:
    """A spinedata store opened for reading. ``study_ids`` is a snapshot taken at first use. ``path`` is a
    ``Path``, or an ``ObjectPath`` for a store at a URL (``spinedata.store.urls``)."""

    def __init__(self, path: str | os.PathLike | ObjectPath, storage_options: Mapping[str, Any] | None = None,
                 *, chunks=None, markers: Mapping[str, dict] | None = None):  # fmt: skip
        self.path = store_location(path, storage_options)
        self._markers = markers  # layout.study_markers when already read (an ingest's, under its lock)
        self.chunks = _dask_chunks(chunks)
        """None, or the chunks of every ``Stack.image`` (Dask-backed; see ``open_dataset``)."""
        self.attrs = read_root_attrs(self.path)
        self.format: int = self.attrs[L.FORMAT_KEY]
        self.checksums = self.format >= L.CHECKSUMS_SINCE
        """Whether the store's chunks carry checksums and its arrays every chunk (format 2 on); a store of
        format 1 is read as before: a missing chunk reads as the fill value, a changed byte goes unseen."""

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, split={self.split!r}, studies={len(self.study_ids)})"

    @property
    def split(self) -> str:
        return self.attrs.get("split", "")

    @cached_property
    def study_ids(self) -> list[str]:
        """Ids (strings) of the complete studies, numeric ids in numeric order."""
        return sorted(complete_study_ids(self.path, self._markers), key=_sort_key)

    def __len__(self) -> int:
        return len(self.study_ids)

    def __contains__(self, study_id) -> bool:
        return str(study_id) in set(self.study_ids)

    def __iter__(self):
        for study_id in self.study_ids:
            yield self.study(study_id)

    def study(self, study_id: str | int) -> Study:
        """The study ``study_id``; ``StoreError`` when the store has no complete study of that id, or when
        ``study_id`` is not an id at all (``'..'``, ``'a/b'``: nothing outside ``studies/`` is read)."""
        sid = check_id("study id", str(study_id))
        attrs = (self._markers or {}).get(sid)
        if attrs is None or attrs.get(L.COMPLETE) is not True:  # not known complete: read it now
            attrs = L.marker(self.path / L.STUDIES / sid)
        if attrs.get(L.COMPLETE) is not True:
            raise StoreError(
                f"study {sid!r} is not in {str(self.path)!r} (or was not written whole); "
                f"it has {len(self.study_ids)} complete studies - see `spine info {self.path}`"
            )
        return Study(self.path, sid, checked=self.checksums, chunks=self.chunks, attrs=attrs)

    def _table(self, name: str, empty: pd.DataFrame) -> pd.DataFrame:
        if not (self.path / name / "zarr.json").is_file():
            if self.split == "test":
                return empty
            raise StoreError(
                f"store {str(self.path)!r} has no {name} table (the ingest was interrupted before writing it); "
                "re-run `spine ingest` to finish it"
            )
        import pandas as pd

        folder = self.path / name
        columns = _attributes(folder).get(COLUMNS_ATTR)
        if not isinstance(columns, list):
            raise StoreError(f"group {name!r} of {str(self.path)!r} is not a spinedata table (no {COLUMNS_ATTR!r})")
        data = {}
        # a table's columns are small single-chunk arrays (``c.0``): a store at a URL fetches them at once
        with prefetched([folder / str(c) / name for c in columns for name in ("zarr.json", "c.0")]):
            for column in map(str, columns):
                values = read_array(self.path, folder / column, every_chunk=self.checksums)
                data[column] = values.astype(object) if values.dtype.kind == "T" else values  # Zarr v3 strings
        return pd.DataFrame(data, columns=columns)

    @cached_property
    def _labels(self) -> pd.DataFrame:
        frame = self._table(L.LABELS, empty_labels())
        return frame[list(LABEL_COLUMNS)]

    @cached_property
    def _targets(self) -> pd.DataFrame:
        frame = self._table(L.TARGETS, empty_targets())
        return frame[list(TARGET_COLUMNS)]

    @property
    def labels(self) -> pd.DataFrame:
        """One row per labelled point: study_id, series_id, instance_number, condition, level, x, y, stack,
        slice, world_x, world_y, world_z (LPS mm; stack/slice -1 and world NaN where not resolvable)."""
        return self._labels.copy()

    @property
    def targets(self) -> pd.DataFrame:
        """study_id + the 25 target columns; 0 Normal/Mild, 1 Moderate, 2 Severe, -1 missing."""
        return self._targets.copy()


def _dask_chunks(chunks):
    """``chunks`` once Dask is known to be there (``ExtraNotInstalled`` naming the extra when not)."""
    if chunks is not None:
        import_extra("dask.array", "open_dataset(chunks=...)")
    return chunks


def open_dataset(path: str | os.PathLike, storage_options: Mapping[str, Any] | None = None, *,
                 chunks=None) -> Dataset:  # fmt: skip
    """Open a spinedata store for reading: a folder, or a URL (``s3://bucket/x.zarr``, ``gs://``, ``file://``,
    ``memory://``, ``zip:///x.zip``; the ``cloud`` extra) whose credentials and endpoint come from the
    environment (``AWS_ENDPOINT_URL``, ...) or ``storage_options`` (passed to fsspec). ``StoreError`` (one
    line) for a missing or unknown store, or a URL that cannot be reached.

    ``chunks``: None (default) reads each ``Stack.image`` on access; otherwise every ``Stack.image`` is
    backed by a Dask array (lazy, read in parallel by Dask's scheduler, or a ``distributed`` cluster whose
    workers see the store), with the chunks xarray's ``open_zarr`` takes: ``{}`` the store's own chunks,
    ``"auto"``, or a size per dimension (``{"slice": 4}``). Values, coords, attrs and the stack's geometry are
    the same either way. Needs the dask extra."""
    return Dataset(path, storage_options, chunks=chunks)
