"""Writing new Zarr v3 groups and whole arrays straight to files, following the Zarr v3 specification.

Why: zarr-python 3 routes every metadata and chunk operation through its asyncio machinery, a large
per-stack cost before any compression (figures in ``docs/benchmarks.md``); ingest writes each array exactly once, whole, into a folder nobody else reads
yet, so this module writes the same bytes directly: ``zarr.json`` per node (regular chunk grid, default
``.`` chunk keys, ``bytes`` little-endian codec, optional ``blosc``, then ``crc32c``) and one file per
chunk (edge chunks padded with the fill value, as the spec requires), or one shard per array. Every chunk
of the grid is written, also one holding only the fill value (zarr-python leaves those out unless
``write_empty_chunks``), so a reader can tell a missing chunk from an empty one.
``tests/spinedata/test_store_fastwrite.py`` checks that zarr-python reads every array back identically, parses the
same metadata it would have written, and writes the same bytes (whole shards included).

Chunks are compressed by Blosc's own Python binding (``blosc``, the C-Blosc 1 library that numcodecs
bundles too, so the bytes are the same): it imports in a third of numcodecs' time (whose codec registry
reads every installed package's entry points; ``bench/bench_ingest_parts.py``), and every ``spine ingest``
imports one of them before its first study starts.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from spinedata.errors import StoreError
from spinedata.store.objectpath import Location, ObjectPath, put_many

BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
"""Blosc's shuffle codes (``BLOSC_NOSHUFFLE``, ``BLOSC_SHUFFLE``, ``BLOSC_BITSHUFFLE``) by their Zarr names."""
DATA_TYPES = {
    np.dtype(t).newbyteorder("<").str: name
    for t, name in (
        (np.bool_, "bool"), (np.int8, "int8"), (np.int16, "int16"), (np.int32, "int32"), (np.int64, "int64"),
        (np.uint8, "uint8"), (np.uint16, "uint16"), (np.uint32, "uint32"), (np.uint64, "uint64"),
        (np.float32, "float32"), (np.float64, "float64"),
    )
}  # fmt: skip


CHUNK_SEPARATOR = "."
"""Chunk keys ``c.0.0.0``: one flat folder per array (``/`` would create a folder per chunk row, and
creating folders was a tenth of ingest's time)."""


def chunk_key(index: tuple[int, ...]) -> str:
    """The file name of a chunk under the array's folder (Zarr v3 ``default`` encoding, ``.`` separator)."""
    return "c" + "".join(f"{CHUNK_SEPARATOR}{i}" for i in index)


def group_document(attributes: dict) -> bytes:
    """The ``zarr.json`` bytes of a group with these attributes, as compact JSON (no indent: the C encoder
    handles it), for the caller to write in one binary write."""
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes}, allow_nan=False).encode()


def write_group(folder, attributes: dict):
    """Create (or rewrite the metadata of) a group at ``folder`` with these attributes. ``folder`` is a
    local path, or an ``ObjectPath`` of a store at a URL (one object written)."""
    if not isinstance(folder, str | os.PathLike):  # an ObjectPath: no folders to make
        (folder / "zarr.json").write_bytes(group_document(attributes))
        return folder
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "zarr.json", "wb", buffering=0) as handle:
        _write_all(handle, group_document(attributes))
    return folder


def blosc_config(cname: str, clevel: int, shuffle: str, typesize: int) -> dict:
    """The ``blosc`` codec configuration as zarr-python writes it."""
    if shuffle not in BLOSC_SHUFFLE:
        raise StoreError(f"blosc shuffle must be one of {sorted(BLOSC_SHUFFLE)}, got {shuffle!r}")
    return {"typesize": typesize, "cname": cname, "clevel": clevel, "shuffle": shuffle, "blocksize": 0}


def blosc_encoder(config: dict) -> Callable[[np.ndarray], bytes]:
    """A function compressing one chunk (a C-contiguous array) into what the Zarr v3 ``blosc`` codec with
    this configuration (``blosc_config``) stores: a C-Blosc 1 frame. Blosc runs on the threads set by
    ``blosc.set_nthreads`` (on import, ``blosc`` starts a pool of one thread per core, up to 8).

    The configuration is checked here, once; each chunk then goes straight to the C extension
    (``blosc.compress`` would check its arguments again at every call; ``docs/benchmarks.md``)."""
    import blosc
    from blosc.blosc_extension import compress

    if config.get("blocksize", 0) != 0:
        raise StoreError(f"only Blosc's automatic block size (0) is written, got {config['blocksize']}")
    if config["cname"] not in blosc.compressor_list():
        raise StoreError(f"Blosc has no compressor {config['cname']!r}; it has {blosc.compressor_list()}")
    if not 0 <= config["clevel"] <= 9 or not 1 <= config["typesize"] <= blosc.MAX_TYPESIZE:
        raise StoreError(f"Blosc needs a level in 0-9 and a type size in 1-{blosc.MAX_TYPESIZE}, got {config}")
    typesize, clevel, cname = config["typesize"], config["clevel"], config["cname"]
    shuffle = BLOSC_SHUFFLE[config["shuffle"]]

    def encode(chunk: np.ndarray) -> bytes:
        if chunk.nbytes > blosc.MAX_BUFFERSIZE:
            raise StoreError(f"a chunk of {chunk.nbytes} bytes exceeds Blosc's limit ({blosc.MAX_BUFFERSIZE})")
        return compress(chunk.view(np.uint8).reshape(-1), typesize, clevel, shuffle, cname)

    return encode


def _vlen_utf8(items: np.ndarray) -> bytes:
    """The ``vlen-utf8`` chunk encoding: item count, then each item's byte length and UTF-8 bytes
    (all lengths little-endian uint32)."""
    encoded = [str(item).encode("utf-8") for item in items.reshape(-1)]
    parts = [struct.pack("<I", len(encoded))]
    for item in encoded:
        parts.append(struct.pack("<I", len(item)))
        parts.append(item)
    return b"".join(parts)


def write_array(folder: str | os.PathLike, data: np.ndarray, **options) -> Path:
    """Write ``data`` as a new Zarr v3 array at the local ``folder`` (which must not exist yet): the files of
    ``array_files`` (same options), each written as it is made (one chunk in memory at a time; a shard's
    encoded chunks written one after another, never joined into one copy: joining them cost ingest about
    15 % more CPU and a fifth more page faults, docs/benchmarks.md).
    """
    files = _array_pieces(data, **options)
    metadata = next(files)  # every check runs before the folder is made: a refused array leaves nothing
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    for name, pieces in itertools.chain((metadata,), files):
        with open(os.path.join(folder, name), "wb", buffering=0) as handle:
            for piece in pieces:
                _write_all(handle, piece)
    return folder


def write_arrays(arrays: Mapping[Location, np.ndarray], **options) -> None:
    """Write each array as a new Zarr v3 array at its place (``write_array``'s options, the same for all) so
    that none appears before it is whole: in a local folder by ``write_array``; at a URL (no folders, no
    rename) every chunk of all of them is put first, in one concurrent batch, then their ``zarr.json``
    (zarr finds no array without it). The bytes are the same either way."""
    chunks: dict[ObjectPath, bytes] = {}
    metadata: dict[ObjectPath, bytes] = {}
    for place, data in arrays.items():
        if not isinstance(place, ObjectPath):
            write_array(place, data, **options)
            continue
        for name, payload in array_files(data, **options):
            (metadata if name == "zarr.json" else chunks)[place / name] = payload
    put_many(chunks)
    put_many(metadata)


def array_files(data: np.ndarray, **options) -> Iterator[tuple[str, bytes]]:
    """The files of ``data`` as a new Zarr v3 array, ``(name, bytes)``: ``zarr.json`` first, then each chunk
    (or the one shard, joined), made one at a time; the options and the bytes are ``write_array``'s. A
    store at a URL puts them as objects."""
    for name, pieces in _array_pieces(data, **options):
        yield name, pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _array_pieces(
    data: np.ndarray,
    *,
    chunks: tuple[int, ...],
    dimension_names: tuple[str, ...],
    attributes: dict | None = None,
    blosc: tuple[str, int, str] | None = None,
    shard: bool = False,
    checksum: bool = True,
) -> Iterator[tuple[str, tuple[bytes, ...]]]:
    """The files of ``data`` as a new Zarr v3 array, ``(name, pieces)`` whose bytes are the pieces one after
    another: ``zarr.json`` first, then each chunk (one piece), or the one shard (its chunks in order, then
    its index), made one at a time.

    ``chunks``: chunk shape (same rank as ``data``); ``blosc``: ``(cname, clevel, shuffle)`` or None for
    uncompressed chunks; the fill value is 0. Text (NumPy ``str``/``object`` of ``str``) is stored as Zarr
    v3 ``string`` with the ``vlen-utf8`` codec (``blosc`` is ignored), fill value ``""``.

    ``shard``: keep every chunk in one file (the ``sharding_indexed`` codec, one shard covering the whole
    array, its index at the end with a CRC32C checksum, as zarr-python writes it by default): ``chunks``
    stay the unit of reading, one file instead of one per chunk is written.

    ``checksum``: end every chunk with its CRC32C (the ``crc32c`` codec, last in the chain, inside the
    shard for a sharded array), which zarr-python and other Zarr v3 readers verify on every read.
    """
    data = np.asarray(data)
    text = data.dtype.kind in "UOT"
    dtype = np.dtype(object) if text else data.dtype.newbyteorder("<")
    if not text and dtype.str not in DATA_TYPES:
        raise StoreError(f"cannot store dtype {data.dtype}; expected one of {sorted(DATA_TYPES.values())}")
    if len(chunks) != data.ndim or len(dimension_names) != data.ndim or min(chunks, default=1) < 1:
        raise StoreError(f"chunks {chunks} and dimension names {dimension_names} must match shape {data.shape}")
    codecs: list[dict] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    compressor = None
    if text:
        codecs = [{"name": "vlen-utf8", "configuration": {}}]
    elif blosc is not None:
        config = blosc_config(*blosc, typesize=dtype.itemsize)
        codecs.append({"name": "blosc", "configuration": config})
        compressor = blosc_encoder(config)
    if checksum:
        codecs.append(CRC32C_CODEC)
    fill = "" if text else False if dtype.kind == "b" else 0.0 if dtype.kind == "f" else 0
    grid_shape = list(chunks)
    if shard:
        if text:
            raise StoreError("text arrays are not sharded")
        grid_shape = [-(-n // c) * c for n, c in zip(data.shape, chunks, strict=True)]
        codecs = [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": list(chunks), "codecs": codecs, "index_codecs": SHARD_INDEX_CODECS,
            "index_location": "end"}}]  # fmt: skip
    yield "zarr.json", (json.dumps(
        {
            "shape": list(data.shape),
            "data_type": "string" if text else DATA_TYPES[dtype.str],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid_shape}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": CHUNK_SEPARATOR}},
            "fill_value": fill,
            "codecs": codecs,
            "attributes": attributes or {},
            "dimension_names": list(dimension_names),
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        },
        allow_nan=False,
    ).encode(),)
    grid = [range(-(-n // c)) for n, c in zip(data.shape, chunks, strict=True)]
    block = np.full(chunks, fill, dtype=dtype)
    parts: dict[tuple[int, ...], bytes] = {}
    crc = _crc32c() if checksum else None
    for index in itertools.product(*grid):
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, data.shape, strict=True))
        part = data[region]
        if part.shape == tuple(chunks) and (text or part.dtype == dtype and part.flags.c_contiguous):
            raw = part
        elif part.shape == tuple(chunks):
            block[...] = part  # reuses one buffer for every chunk
            raw = block
        else:  # an edge chunk: stored whole, padded with the fill value
            block[...] = fill
            block[tuple(slice(0, s) for s in part.shape)] = part
            raw = block
        if text:
            payload = _vlen_utf8(raw)
        elif compressor:
            payload = compressor(raw)
        else:
            payload = raw.tobytes()
        if crc is not None:
            payload = payload + struct.pack("<I", crc(payload))
        if shard:
            parts[index] = payload
            continue
        yield chunk_key(index), (payload,)
    if shard:
        counts = tuple(len(r) for r in grid)
        order = morton_order(counts)
        yield chunk_key((0,) * data.ndim), (*(parts[index] for index in order), _shard_index(parts, order, counts))


def _crc32c() -> Callable[[bytes], int]:
    import google_crc32c  # the library zarr-python's crc32c codec uses

    return google_crc32c.value


CRC32C_CODEC = {"name": "crc32c"}
"""The Zarr v3 ``crc32c`` codec: the chunk's bytes, then their CRC32C as a little-endian uint32."""


@functools.lru_cache(maxsize=64)
def morton_order(counts: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The chunk indices of a shard of ``counts`` chunks in Morton (Z) order, the order zarr-python writes
    a shard's chunks in: bits of the indices interleaved, the first axis's bit lowest at each level."""
    bits = [(c - 1).bit_length() for c in counts]

    def code(index: tuple[int, ...]) -> int:
        z = out = 0
        for level in range(max(bits, default=0)):
            for axis, n in enumerate(bits):
                if level < n:
                    z |= ((index[axis] >> level) & 1) << out
                    out += 1
        return z

    return tuple(sorted(itertools.product(*(range(c) for c in counts)), key=code))


def _write_all(handle, data: bytes) -> None:
    """Write every byte through an unbuffered file (a raw write may take fewer bytes than given)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


SHARD_INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
"""Codecs of a shard's index (zarr-python's default): little-endian uint64 pairs, then their CRC32C."""


def _shard_index(parts: dict[tuple[int, ...], bytes], order: tuple[tuple[int, ...], ...],
                 counts: tuple[int, ...]) -> bytes:  # fmt: skip
    """The end of a shard whose encoded chunks ``parts`` (by chunk index) lie in the file in ``order``: the
    index of ``(offset, nbytes)`` per chunk (C order of the indices) as little-endian uint64, then the
    index's CRC32C (uint32, little-endian)."""
    index = np.empty((*counts, 2), dtype="<u8")
    offset = 0
    for chunk in order:
        index[chunk] = (offset, len(parts[chunk]))
        offset += len(parts[chunk])
    raw_index = index.tobytes()
    return raw_index + struct.pack("<I", _crc32c()(raw_index))
