"""The store's speed tricks, behind plainly named functions (the store is the same without them).

- ``write_array``: a new array written straight to its files by ``fastwrite`` (the bytes zarr-python
  writes, without its asyncio machinery and its import in every ingest worker);
- ``read_small_array``: a whole array stored as one uncompressed chunk (positions, instance numbers, table
  columns) read straight from its file, without opening it through zarr.

``SPINE_TUNING_OFF=fastwrite,small_read`` switches them off (zarr-python writes and reads then), for A/B
runs (``bench/bench_tricks.py``); the figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from spinedata.errors import StoreError
from spinedata.store.arraymeta import _crc32c, array_metadata, chunk_key
from spinedata.store.fastwrite import CRC32C_CODEC, DATA_TYPES, write_group

__all__ = ["read_small_array", "write_array", "write_group"]

PLAIN_DTYPES = {name: code for code, name in DATA_TYPES.items()}
"""Zarr v3 data type -> little-endian NumPy dtype, for ``read_small_array`` (the types ``fastwrite`` writes)."""
BYTES_CODEC = {"name": "bytes", "configuration": {"endian": "little"}}


def _on(trick: str) -> bool:
    """Whether a trick is on (not named in ``SPINE_TUNING_OFF``)."""
    return trick not in os.environ.get("SPINE_TUNING_OFF", "").split(",")


def write_array(folder: str | os.PathLike, data: np.ndarray, **options) -> Path:
    """``fastwrite.write_array`` (a new Zarr v3 array written straight to files), or zarr-python's."""
    if _on("fastwrite"):
        from spinedata.store.fastwrite import write_array as fast

        return fast(folder, data, **options)
    return _write_with_zarr(folder, data, **options)


def _write_with_zarr(folder, data, *, chunks, dimension_names, attributes=None, blosc=None, shard=False,
                     checksum=True) -> Path:  # fmt: skip
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec
    from zarr.storage import LocalStore

    data = np.asarray(data)
    text = data.dtype.kind in "UOT"
    compressors = []
    if blosc is not None and not text:
        cname, clevel, shuffle = blosc
        compressors.append(BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle, typesize=data.dtype.itemsize))
    if checksum:
        compressors.append(Crc32cCodec())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    array = zarr.create_array(
        LocalStore(folder), shape=data.shape, dtype=str if text else data.dtype, chunks=chunks,
        shards=tuple(-(-n // c) * c for n, c in zip(data.shape, chunks, strict=True)) if shard else None,
        compressors=compressors, dimension_names=dimension_names, attributes=attributes or {},
        chunk_key_encoding={"name": "default", "separator": "."}, config={"write_empty_chunks": True},
    )  # fmt: skip
    array[...] = data
    return folder


def read_small_array(folder: Path, *, every_chunk: bool) -> np.ndarray | None:
    """A whole array stored as one uncompressed little-endian chunk, with or without a CRC32C (as
    ``fastwrite`` writes the store's small arrays), read straight from its file; ``None`` for any other
    layout (zarr reads it then), and for a missing chunk unless ``every_chunk``. ``StoreError`` (the
    problem alone; ``damaged`` makes the message) for a missing chunk, a wrong size or checksum."""
    if not _on("small_read"):
        return None
    meta = array_metadata(folder)
    shape = meta.get("shape")
    grid = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
    keys = meta.get("chunk_key_encoding", {})
    dtype = PLAIN_DTYPES.get(meta.get("data_type"))
    codecs = meta.get("codecs")
    if (
        not shape or grid != shape or dtype is None or keys.get("name") != "default"
        or codecs not in ([BYTES_CODEC], [BYTES_CODEC, CRC32C_CODEC]) or meta.get("storage_transformers")
    ):  # fmt: skip
        return None
    key = chunk_key(meta, (0,) * len(shape))
    try:
        raw = (folder / key).read_bytes()
    except FileNotFoundError:
        if every_chunk:
            raise StoreError(f"chunk {key} missing") from None
        return None
    except OSError as error:
        raise StoreError(f"chunk {key} unreadable ({error})") from None
    count = math.prod(shape)
    expected = count * np.dtype(dtype).itemsize + (4 if len(codecs) == 2 else 0)
    if len(raw) != expected:
        raise StoreError(f"chunk {key} holds {len(raw)} bytes where shape {shape} needs {expected}")
    if len(codecs) == 2:
        if struct.unpack("<I", raw[-4:])[0] != _crc32c(raw[:-4]):
            raise StoreError(f"chunk {key} fails its checksum (its bytes changed)")
        raw = raw[:-4]
    values = np.frombuffer(raw, dtype=dtype)
    return values.astype(np.dtype(dtype).newbyteorder("="), copy=True).reshape(shape)
