"""Downsampled copies of a stack's image for viewers: the optional levels of its OME-Zarr multiscale.

Why: napari and other NGFF viewers show a thumbnail or a zoomed-out view from a smaller level instead of
reading every pixel. The levels are for viewers only: spinedata reads ``image`` and nothing else.

Level ``l`` (1, 2, ...) of a stack is the array ``levels/<l>`` of its group (``spine ngff STORE --levels
N``): each pixel the mean of a ``2**l x 2**l`` block of the image's rows and columns, slices kept, the
rows and columns past the last whole block left out; stored in the image's dtype (integers rounded to the
nearest) with its encoding (chunks, Blosc, one shard, CRC32C on every chunk, every chunk written). Levels
are made while both their row and column counts are at least ``MIN_SIZE``. Their place in space is the
multiscale's metadata (``spinedata.store.ngff``).

Written so that a reader never meets a part: a level array is whole before the stack's metadata lists it,
and the metadata stops listing one before it is deleted. Locally an array is written into a hidden folder
beside its final name and renamed into place; at a URL its objects are put first and its ``zarr.json``
last (zarr finds no array without it). A level is a function of the image, which never changes, so an
array whose metadata is what this version writes, and whose shard is whole, is kept as it is: a second
run writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import numpy as np

from spinedata.errors import StoreError
from spinedata.store import layout as L
from spinedata.store._fast import PLAIN_DTYPES
from spinedata.store.arraymeta import array_metadata
from spinedata.store.fastwrite import array_files, write_arrays, write_group
from spinedata.store.integrity import chunk_problems, damaged, read_array
from spinedata.store.ngff import level_factor
from spinedata.store.objectpath import Location, ObjectPath, remove_tree, subfolders
from spinedata.store.scaling import ADD_OFFSET, SCALE_FACTOR

MIN_SIZE = 64
"""A level is made only while both its in-plane sizes (rows, columns) are at least this many pixels."""
LEVEL_ATTR = "spinedata_level"
GROUP_ATTRS = {"spinedata_levels": "downsampled copies of ../image for viewers; listed in the stack's ome multiscales"}


def level_shapes(shape: tuple[int, ...], levels: int) -> list[tuple[int, int, int]]:
    """The shapes of levels 1 .. ``levels`` of an image of ``shape`` ``(slice, row, col)``, as far as both
    in-plane sizes stay at least ``MIN_SIZE``."""
    out = []
    for level in range(1, levels + 1):
        f = level_factor(level)
        rows, cols = int(shape[1]) // f, int(shape[2]) // f
        if min(rows, cols) < MIN_SIZE:
            break
        out.append((int(shape[0]), rows, cols))
    return out


def downsample(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Levels 1 .. ``levels`` of ``image`` ``(slice, row, col)`` as float64 means of ``2**l x 2**l`` blocks
    (each level halves the one before it; a mean of equal blocks' means is the mean of their union)."""
    out = []
    current = np.asarray(image, dtype=np.float64)
    for _ in range(levels):
        s, r, c = current.shape
        r, c = r // 2, c // 2
        current = current[:, : 2 * r, : 2 * c].reshape(s, r, 2, c, 2).mean(axis=(2, 4))
        out.append(current)
    return out


def stored(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Mean values in the image's dtype: integers rounded to the nearest (half to even), floats cast."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def level_attributes(image_attrs: dict, level: int) -> dict:
    """The attributes of a level array: what it is, and the image's CF ``scale_factor``/``add_offset``
    (a level of stored integers holds stored integers too)."""
    f = level_factor(level)
    attrs = {key: image_attrs[key] for key in (SCALE_FACTOR, ADD_OFFSET) if key in image_attrs}
    attrs[LEVEL_ATTR] = {
        "level": level, "source": f"../../{L.IMAGE}", "factor": [1, f, f],
        "method": f"mean of {f} x {f} pixel blocks of rows and columns, slices kept; rows and columns past the "
                  "last whole block left out; integers rounded to the nearest",
    }  # fmt: skip
    return attrs


def _options(shape: tuple[int, ...]) -> dict:
    """The encoding of a level: the image's."""
    return {"chunks": L.image_chunks(shape), "dimension_names": L.IMAGE_DIMS, "blosc": L.IMAGE_BLOSC,
            "shard": L.IMAGE_SHARDED}  # fmt: skip


def expected_metadata(shape: tuple[int, ...], dtype: np.dtype, attributes: dict) -> dict:
    """The ``zarr.json`` this version writes for a level of this shape, dtype and attributes."""
    placeholder = np.broadcast_to(np.zeros((), dtype), shape)  # only its shape and dtype are looked at
    _, document = next(array_files(placeholder, attributes=attributes, **_options(shape)))  # zarr.json first
    return json.loads(document)


def _metadata_or_none(folder: Location) -> dict | None:
    try:
        return json.loads((folder / "zarr.json").read_bytes())
    except (OSError, ValueError):
        return None


def _is_whole(folder: Location, expected: dict) -> bool:
    """Whether the level array at ``folder`` is there as this version writes it: its metadata, and its
    shard with a sound index (nothing decoded: ``spine verify`` checks the chunks' checksums)."""
    meta = _metadata_or_none(folder)
    if meta != expected:
        return False
    try:
        return not chunk_problems(folder, meta)
    except StoreError:
        return False


def write_levels(root: Location, stack: Location, wanted: int, *, checked: bool) -> int:
    """Make levels 1 .. ``wanted`` of the stack group at ``stack`` whole (``wanted`` from ``level_shapes``);
    return how many arrays were written (0 when all were already there). The image is read checked
    (``DamagedStoreError`` for a damaged one: no level is made from damage)."""
    if wanted < 1:
        return 0
    image_folder = stack / L.IMAGE
    try:
        meta = array_metadata(image_folder)
        dtype = np.dtype(PLAIN_DTYPES[meta["data_type"]])
    except (StoreError, KeyError) as error:
        raise damaged(root, image_folder, str(error) or "unknown data type") from None
    shapes = level_shapes(tuple(meta["shape"]), wanted)
    image_attrs = meta.get("attributes", {})
    group = stack / L.LEVELS
    todo = [level for level, shape in enumerate(shapes, 1)
            if not _is_whole(group / str(level), expected_metadata(shape, dtype, level_attributes(image_attrs, level)))]  # fmt: skip
    if not todo:
        return 0
    means = downsample(read_array(root, image_folder, every_chunk=checked), max(todo))
    if _metadata_or_none(group) is None:
        write_group(group, GROUP_ATTRS)
    for level in todo:
        _write_array(group / str(level), stored(means[level - 1], dtype), level_attributes(image_attrs, level))
    return len(todo)


def _write_array(target: Location, data: np.ndarray, attributes: dict) -> None:
    """Write one level array so that it appears whole (see the module's docstring), replacing one there."""
    options = _options(data.shape)
    if isinstance(target, ObjectPath):
        remove_tree(target)
        write_arrays({target: data}, attributes=attributes, **options)
        return
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}"
    try:
        write_arrays({temporary: data}, attributes=attributes, **options)
        remove_tree(target)
        os.rename(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def remove_levels(stack: Location, keep: int) -> int:
    """Delete the level arrays of the stack group at ``stack`` past ``keep`` (all of ``levels/`` when
    ``keep`` is 0) and what an interrupted run left (hidden folders); return how many arrays went. Call
    only once the stack's metadata no longer lists them. A folder that cannot be deleted raises its
    ``OSError`` (``spine ngff`` prints it as one line)."""
    group = stack / L.LEVELS
    removed = 0
    for name, folder in subfolders(group):
        if name.isdigit() and 1 <= int(name) <= keep:
            continue
        if not name.isdigit() and not name.startswith("."):
            continue  # not written here: left alone
        remove_tree(folder)  # a failure is raised: an array still there is not counted as removed
        removed += name.isdigit()
    if keep == 0 and not any(name for name, _ in subfolders(group)):
        remove_tree(group)
    return removed

