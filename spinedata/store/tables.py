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

from spinedata.errors import StoreError
from spinedata.store.fastwrite import write_array, write_group
from spinedata.store.layout import STAGING

COLUMNS_ATTR = "columns"


def _column_array(values: pd.Series) -> np.ndarray:
    """A column as a NumPy array Zarr can store: object/string columns become ``object`` arrays of ``str``."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy()
    return np.asarray(values.astype(str).to_numpy(), dtype=object)


def write_table(folder: Path, frame: pd.DataFrame, dim: str, attrs: dict | None = None) -> None:
    """Write ``frame``'s columns as a new group at ``folder``: one 1-D array per column along ``dim``."""
    write_group(folder, {COLUMNS_ATTR: [str(c) for c in frame.columns], **(attrs or {})})
    for name in frame.columns:
        write_array(folder / str(name), _column_array(frame[name]), chunks=(max(len(frame), 1),),
                    dimension_names=(dim,))  # fmt: skip


def replace_table(root_path: str | os.PathLike, name: str, frame: pd.DataFrame, dim: str, attrs=None) -> None:
    """Write ``frame`` as group ``name`` of the store at ``root_path``, replacing any previous one.

    The new table is written under the store's staging folder and renamed into place, so a reader sees
    either the old or the new table, or (for an instant) none, never a half-written one.
    """
    root = Path(root_path)
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
