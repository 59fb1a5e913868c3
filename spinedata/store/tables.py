"""Tables (pandas DataFrames) stored as a Zarr group of 1-D column arrays sharing one dimension.

Strings are Zarr v3 variable-length strings, numbers keep their dtype; the group's ``columns`` attribute
keeps the column order. Plain xarray opens such a group as a Dataset (``xr.open_zarr(store, group=...)``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.storage import LocalStore

from spinedata.errors import StoreError
from spinedata.store.layout import STAGING

COLUMNS_ATTR = "columns"


def _column_array(values: pd.Series) -> np.ndarray:
    """A column as a NumPy array Zarr can store: object/string columns become ``str``."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy()
    return np.asarray(values.astype(str).to_numpy(), dtype=str)


def write_table(group: zarr.Group, frame: pd.DataFrame, dim: str, attrs: dict | None = None) -> None:
    """Write ``frame``'s columns into ``group`` (an empty group) as 1-D arrays along ``dim``."""
    n = len(frame)
    for name in frame.columns:
        data = _column_array(frame[name])
        dtype = str if data.dtype.kind in "UO" else data.dtype
        array = group.create_array(
            str(name), shape=(n,), chunks=(max(n, 1),), dtype=dtype, dimension_names=(dim,)
        )
        if n:
            array[:] = data
    group.attrs.update({COLUMNS_ATTR: [str(c) for c in frame.columns], **(attrs or {})})


def replace_table(root_path: str | os.PathLike, name: str, frame: pd.DataFrame, dim: str, attrs=None) -> None:
    """Write ``frame`` as group ``name`` of the store at ``root_path``, replacing any previous one.

    The new table is written under the store's staging folder and renamed into place, so a reader sees
    either the old or the new table, or (for an instant) none, never a half-written one.
    """
    root = Path(root_path)
    staging = root / STAGING / f"{name}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    write_table(zarr.open_group(LocalStore(staging), mode="w"), frame, dim, attrs)
    target = root / name
    trash = root / STAGING / f"{name}.old.{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.rename(target, trash)
    os.rename(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


def read_table(group: zarr.Group) -> pd.DataFrame:
    """Read a table written by ``write_table``; columns in their written order."""
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
