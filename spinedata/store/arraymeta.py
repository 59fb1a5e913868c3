"""What an array's ``zarr.json`` says about its chunks: the metadata itself, its chunk grid, sharding and
checksum codecs, chunk file names, and the CRC32C that Zarr's ``crc32c`` codec appends."""

from __future__ import annotations

import json
from pathlib import Path

from spinedata.errors import StoreError


def array_metadata(folder: Path) -> dict:
    """An array's ``zarr.json``; ``StoreError`` when it is missing, unreadable or not an array's."""
    try:
        meta = json.loads((folder / "zarr.json").read_text())
    except FileNotFoundError:
        raise StoreError("missing (no zarr.json)") from None
    except (OSError, ValueError) as error:
        raise StoreError(f"unreadable zarr.json ({error})") from None
    if not isinstance(meta, dict) or meta.get("node_type") != "array":
        raise StoreError("zarr.json does not describe an array")
    return meta


def _sharding(meta: dict) -> dict | None:
    codecs = meta.get("codecs") or []
    if codecs and isinstance(codecs[0], dict) and codecs[0].get("name") == "sharding_indexed":
        return codecs[0].get("configuration", {})
    return None


def has_checksums(meta: dict) -> bool:
    """Whether every chunk of the array carries a CRC32C (the ``crc32c`` codec, inside the shard if any)."""
    sharding = _sharding(meta)
    codecs = sharding.get("codecs", []) if sharding is not None else meta.get("codecs", [])
    return any(isinstance(c, dict) and c.get("name") == "crc32c" for c in codecs)


def _grid(meta: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(shape, chunk grid's chunk shape)``; ``StoreError`` for a grid other than regular."""
    grid = meta.get("chunk_grid", {})
    if grid.get("name") != "regular":
        raise StoreError(f"chunk grid {grid.get('name')!r} is not checked (only 'regular')")
    shape = tuple(int(n) for n in meta.get("shape", ()))
    chunks = tuple(int(c) for c in grid.get("configuration", {}).get("chunk_shape", ()))
    if len(shape) != len(chunks) or min(chunks, default=1) < 1:
        raise StoreError(f"chunk shape {list(chunks)} does not fit the shape {list(shape)}")
    return shape, chunks


def chunk_key(meta: dict, index: tuple[int, ...]) -> str:
    """The file name of a chunk (Zarr v3 ``default`` or ``v2`` chunk key encoding)."""
    encoding = meta.get("chunk_key_encoding", {})
    name = encoding.get("name", "default")
    separator = encoding.get("configuration", {}).get("separator", "/" if name == "default" else ".")
    if name == "v2":
        return separator.join(map(str, index)) if index else "0"
    return separator.join(["c", *map(str, index)])


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return google_crc32c.value(data)
