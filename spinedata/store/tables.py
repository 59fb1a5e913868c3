"""Tables stored as a Zarr group of 1-D column arrays sharing one dimension.

Strings are Zarr v3 variable-length strings, numbers keep their dtype; the group's ``columns`` attribute
keeps the column order. Plain xarray opens such a group as a Dataset (``xr.open_zarr(store, group=...)``).
Tables are written from a mapping of column name -> values (a ``dict`` of arrays or a pandas DataFrame)
and read back as a DataFrame.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinedata.errors import StoreError
from spinedata.store.fastwrite import array_files, group_document, write_array, write_group
from spinedata.store.layout import STAGING
from spinedata.store.objectpath import ObjectPath, put_many
from spinedata.store.urls import store_location

if TYPE_CHECKING:
    import pandas as pd
    import zarr

COLUMNS_ATTR = "columns"


def _column_array(values) -> np.ndarray:
    """A column as a NumPy array Zarr can store: booleans and numbers as they are, anything else as an
    ``object`` array of ``str``."""
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return array
    out = np.empty(len(array), dtype=object)
    out[:] = [str(v) for v in array]
    return out


def write_table(folder: Path, frame: Mapping, dim: str, attrs: dict | None = None) -> None:
    """Write ``frame``'s columns as a new group at ``folder``: one 1-D array per column along ``dim``."""
    columns = [str(c) for c in frame.keys()]
    write_group(folder, {COLUMNS_ATTR: columns, **(attrs or {})})
    n = len(frame[next(iter(frame.keys()))]) if columns else 0
    for name in frame.keys():
        write_array(folder / str(name), _column_array(frame[name]), chunks=(max(n, 1),),
                    dimension_names=(dim,))  # fmt: skip


def replace_table(root_path: str | os.PathLike | ObjectPath, name: str, frame: Mapping, dim: str, attrs=None) -> None:
    """Write ``frame`` as group ``name`` of the store at ``root_path``, replacing any previous one.

    The new table is written under the store's staging folder and renamed into place, so a reader sees
    either the old or the new table, or (for an instant) none, never a half-written one.

    On a store at a URL (no rename) the group's ``zarr.json`` goes first and comes back last: the old one is
    deleted, then the old columns, the new columns are put, and the group's ``zarr.json`` is written. A
    reader that opens the table meanwhile finds none ("not written"); one that had opened the old table
    just before may read a column that is already gone, and gets an error, or (should both tables have as
    many rows) a new column beside an old one: read tables while no ingest writes the store.
    """
    root = store_location(root_path, writing=True)
    if isinstance(root, ObjectPath):
        _replace_remote(root / name, frame, dim, attrs)
        return
    staging = root / STAGING / f"{name}.{uuid.uuid4().hex[:8]}"
    write_table(staging, frame, dim, attrs)
    target = root / name
    trash = root / STAGING / f"{name}.old.{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.rename(target, trash)
    os.rename(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


def _replace_remote(target: ObjectPath, frame: Mapping, dim: str, attrs: dict | None) -> None:
    (target / "zarr.json").unlink(missing_ok=True)
    target.remove_tree()
    columns = [str(c) for c in frame.keys()]
    n = len(frame[next(iter(frame.keys()))]) if columns else 0
    objects = {
        target / str(column) / file: payload
        for column in frame.keys()
        for file, payload in array_files(_column_array(frame[column]), chunks=(max(n, 1),), dimension_names=(dim,))
    }
    put_many(objects)
    (target / "zarr.json").write_bytes(group_document({COLUMNS_ATTR: columns, **(attrs or {})}))


def read_table(group: zarr.Group) -> pd.DataFrame:
    """Read a table written by ``write_table``; columns in their written order."""
    import pandas as pd

    columns = group.attrs.get(COLUMNS_ATTR)
    if columns is None:
        raise StoreError(f"group {group.path!r} is not a spinedata table (no {COLUMNS_ATTR!r} attribute)")
    data = {}
    for name in columns:
        values = group[name][:]
        if values.dtype.kind == "T":  # NumPy StringDType from Zarr v3 strings
            values = values.astype(object)
        data[name] = values
    return pd.DataFrame(data, columns=list(columns))
