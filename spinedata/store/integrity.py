"""Is an array of the store whole? Its chunks present, its shard index sound, its chunks' checksums right.

From format 2 (``layout.CHECKSUMS_SINCE``) every chunk of an array's grid is written, one holding only the
fill value too, and ends with its CRC32C (the Zarr v3 ``crc32c`` codec; inside shards too). So:

- a chunk file, or a shard's entry, that is not there is damage, not an empty chunk (``chunk_problems``
  finds them from the array's shape, chunk grid and shard index, without decoding anything);
- a flipped byte of a chunk fails its checksum when the chunk is decoded (zarr-python's ``crc32c`` codec,
  or ``_fast.read_small_array``), and a shard's index carries a checksum of its own.

Zarr itself reads a missing chunk as the fill value, so the reader calls ``chunk_problems`` before it
reads an array through zarr, and ``spinedata.store.verify`` runs both checks over a whole store.
"""

from __future__ import annotations

import itertools
import math
import struct
from pathlib import Path

import numpy as np

from spinedata.errors import StoreError
from spinedata.store._fast import read_small_array
from spinedata.store.arraymeta import _crc32c, _grid, _sharding, array_metadata, chunk_key
from spinedata.store.objectpath import Location, ObjectPath, read_head, read_tail, zarr_store

MAX_UINT64 = 2**64 - 1
"""A shard index entry ``(MAX_UINT64, MAX_UINT64)`` marks a chunk that is not in the shard."""


class DamagedStoreError(StoreError):
    """An array of a store is damaged or incomplete: a chunk missing, a checksum wrong, bytes undecodable."""


def describe(root: Location, folder: Location) -> str:
    """``study 7, array 42/0/image`` or ``table labels, column x``: where an array lies, for messages."""
    try:
        parts = (folder if isinstance(folder, ObjectPath) else Path(folder)).relative_to(root).parts
    except ValueError:
        return str(folder)
    if len(parts) >= 3 and parts[0] == "studies":
        return f"study {parts[1]}, array {'/'.join(parts[2:])}"
    if len(parts) == 2:
        return f"table {parts[0]}, column {parts[1]}"
    return "/".join(parts)


def damaged(root: Location, folder: Location, problem: str) -> DamagedStoreError:
    """The one-line error for ``problem`` of the array at ``folder``."""
    return DamagedStoreError(
        f"damaged store {str(root)!r}: {describe(root, folder)}: {problem}; `spine verify {root}` lists all damage"
    )


def chunk_problems(folder: Location, meta: dict | None = None) -> list[str]:
    """What is missing from the array at ``folder`` (empty when every chunk of its grid is there): chunk or
    shard files, chunks a shard's index does not hold, a shard index failing its checksum or pointing
    past the shard's end. Nothing is decoded; checksums of chunks are checked when they are read."""
    meta = array_metadata(folder) if meta is None else meta
    shape, chunks = _grid(meta)
    sharding = _sharding(meta)
    problems = []
    # an object store answers one listing (names and sizes) faster than a request per chunk
    listed = folder.file_sizes() if isinstance(folder, ObjectPath) else None
    for index in itertools.product(*(range(-(-n // c)) for n, c in zip(shape, chunks, strict=True))):
        key = chunk_key(meta, index)
        path = folder / key
        there = key in listed if listed is not None and "/" not in key else path.is_file()
        if not there:
            problems.append(f"{'shard' if sharding is not None else 'chunk'} {key} missing")
        elif sharding is not None:
            inner = tuple(int(c) for c in sharding.get("chunk_shape", ()))
            size = listed.get(key) if listed is not None else None
            problems += [f"shard {key}: {p}" for p in _shard_problems(path, chunks, inner, sharding, size)]
    return problems


def _shard_problems(path: Location, shard_shape: tuple[int, ...], inner: tuple[int, ...], config: dict,
                    size: int | None = None) -> list[str]:  # fmt: skip
    """Problems of one shard's index (spec: ``(offset, nbytes)`` uint64 pairs per inner chunk, C order);
    ``size``: the shard's size when known."""
    if len(inner) != len(shard_shape) or min(inner, default=1) < 1:
        return [f"inner chunk shape {list(inner)} does not fit the shard {list(shard_shape)}"]
    if any(s % c for s, c in zip(shard_shape, inner, strict=True)):
        return [f"inner chunk shape {list(inner)} does not divide the shard {list(shard_shape)}"]
    codecs = [c.get("name") for c in config.get("index_codecs", []) if isinstance(c, dict)]
    if codecs not in (["bytes"], ["bytes", "crc32c"]):
        return [f"shard index codecs {codecs} are not checked"]
    counts = tuple(s // c for s, c in zip(shard_shape, inner, strict=True))
    n = math.prod(counts)
    checksum = 4 if "crc32c" in codecs else 0
    index_size = 16 * n + checksum
    if config.get("index_location", "end") == "start":
        size = path.stat().st_size if size is None else size
        raw = read_head(path, index_size)
    else:
        size, raw = read_tail(path, index_size, size)
    if size < index_size:
        return [f"{size} bytes, shorter than its index ({index_size} bytes)"]
    if checksum and struct.unpack("<I", raw[-4:])[0] != _crc32c(raw[:-4]):
        return ["index checksum mismatch (the index is damaged)"]
    entries = np.frombuffer(raw[: 16 * n], dtype="<u8").reshape(n, 2)
    problems = []
    data_start, data_end = (index_size, size) if config.get("index_location") == "start" else (0, size - index_size)
    missing = int(np.sum((entries[:, 0] == MAX_UINT64) & (entries[:, 1] == MAX_UINT64)))
    if missing:
        problems.append(f"{missing} of its {n} chunks missing")
    present = entries[entries[:, 0] != MAX_UINT64]
    if len(present) and (np.any(present[:, 0] < data_start) or np.any(present[:, 0] + present[:, 1] > data_end)):
        problems.append("index points outside the shard's data (truncated?)")
    return problems


ZARR_READ_ERRORS = (ValueError, RuntimeError, TypeError, KeyError, OSError, struct.error)
"""What zarr-python raises for damaged bytes: a checksum mismatch (``ValueError``), an undecodable Blosc
frame (``RuntimeError``), a chunk of the wrong size (``ValueError``), an unreadable file (``OSError``)."""


def read_with_zarr(folder: Location, selection=Ellipsis) -> np.ndarray:
    """``selection`` of the array at ``folder`` through zarr-python; ``StoreError`` (the problem alone)
    when zarr cannot read or decode it (``chunk_problems`` must be checked first: zarr reads a missing
    chunk as the fill value)."""
    import zarr

    try:
        array = zarr.open_array(store=zarr_store(folder), mode="r")
        return np.asarray(array[selection])
    except ZARR_READ_ERRORS as error:
        raise StoreError(zarr_problem(error)) from error


def zarr_problem(error: BaseException) -> str:
    """What zarr-python's ``error`` says of the array, in a few words."""
    if isinstance(error, ValueError) and "checksum" in str(error):
        return "a chunk fails its checksum (its bytes changed)"
    return f"cannot be read ({type(error).__name__}: {_short(error)})"


def _short(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def check_array(root: Location, folder: Location, *, every_chunk: bool) -> dict:
    """The array's metadata once its chunks are all there (when ``every_chunk``); ``DamagedStoreError``
    naming the array and its first problem otherwise."""
    try:
        meta = array_metadata(folder)
        problems = chunk_problems(folder, meta) if every_chunk else []
    except StoreError as error:
        raise damaged(root, folder, str(error)) from None
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise damaged(root, folder, problems[0] + more)
    return meta


def read_array(root: Location, folder: Location, *, every_chunk: bool, selection=Ellipsis) -> np.ndarray:
    """``selection`` of a store's array, checked (``check_array`` before zarr reads it; a small whole array
    is read and checked by ``read_small_array``); ``DamagedStoreError`` naming the array and the problem."""
    try:
        if selection is Ellipsis:
            small = read_small_array(folder, every_chunk=every_chunk)
            if small is not None:
                return small
        check_array(root, folder, every_chunk=every_chunk)
        return read_with_zarr(folder, selection)
    except DamagedStoreError:
        raise
    except StoreError as error:
        raise damaged(root, folder, str(error)) from None

