"""Speed tricks of the store (it reads and writes the same without them).

Each can be switched off for an A/B run: ``SPINE_TUNING_OFF=fastwrite,plain_read``
(``bench/bench_tricks.py``; figures and verdicts in docs/benchmarks.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _on(trick: str) -> bool:
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
