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
from typing import TYPE_CHECKING

import numpy as np

from spinedata.errors import StoreError
from spinedata.store.fastwrite import write_arrays, write_group
from spinedata.store.layout import STAGING
from spinedata.store.objectpath import Location, ObjectPath
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


def write_table(folder: Location, frame: Mapping, dim: str, attrs: dict | None = None) -> None:
    """Write ``frame``'s columns as a new group at ``folder`` (a local folder, or a key prefix of a store at a
    URL): one 1-D array per column along ``dim``, then the group's ``zarr.json``, last, so that on an object
    store no table exists until every column is stored."""
    columns = list(frame.keys())
    n = len(frame[columns[0]]) if columns else 0
    write_arrays({folder / str(column): _column_array(frame[column]) for column in columns},
                 chunks=(max(n, 1),), dimension_names=(dim,))  # fmt: skip
    write_group(folder, {COLUMNS_ATTR: [str(c) for c in columns], **(attrs or {})})


def replace_table(root_path: str | os.PathLike | ObjectPath, name: str, frame: Mapping, dim: str, attrs=None) -> None:
    """Write ``frame`` as group ``name`` of the store at ``root_path``, replacing any previous one.

    The new table is written under the store's staging folder and renamed into place, so a reader sees
    either the old or the new table, or (for an instant) none, never a half-written one.

    On a store at a URL (no rename) the group's ``zarr.json`` goes first and comes back last: the old one is
    deleted, then the old columns, then ``write_table`` puts the new columns and the group's ``zarr.json``. A
    reader that opens the table meanwhile finds none ("not written"); one that had opened the old table
    just before may read a column that is already gone, and gets an error, or (should both tables have as
    many rows) a new column beside an old one: read tables while no ingest writes the store.
    """
    root = store_location(root_path, writing=True)
    if isinstance(root, ObjectPath):
        target = root / name
        (target / "zarr.json").unlink(missing_ok=True)
        target.remove_tree()
        write_table(target, frame, dim, attrs)
        return
    staging = root / STAGING / f"{name}.{uuid.uuid4().hex[:8]}"
    write_table(staging, frame, dim, attrs)
    target = root / name
    trash = root / STAGING / f"{name}.old.{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.rename(target, trash)
    os.rename(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


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
