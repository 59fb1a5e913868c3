"""Names, format version and encodings of the spinedata Zarr store (see ``docs/store.md``).

::

    DATASET.zarr/                     attrs: spinedata_format, space "LPS", unit "mm", source, split
      studies/<study_id>/             attrs: complete (true once written whole), warnings, study_id
        <series_id>/                  attrs: description, role, SeriesInstanceUID
          <k>/                        one stack; attrs = StackGeometry.to_attrs() + NGFF (store.ngff)
            image            (slice,row,col)
            instance_number  (slice,)
            position         (slice,xyz)   LPS mm
            levels/                   optional (``spine ngff --levels``): 1, 2, ... downsampled images
      labels/                         1-D column arrays, dimension "point"
      targets/                        1-D column arrays, dimension "study"
      .staging/                       plain folder (not a Zarr node): studies being written
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from spinedata.errors import StoreError
from spinedata.store.objectpath import Location, ObjectPath, prefetched, subfolders
from spinedata.store.urls import store_location

if TYPE_CHECKING:
    from zarr.codecs import BloscCodec

FORMAT_KEY = "spinedata_format"
FORMAT_VERSION = 2
"""Version of this layout, written by this version; readers refuse versions not in ``READABLE_FORMATS``.

2: every chunk ends with its CRC32C (the Zarr v3 ``crc32c`` codec, also inside shards), and every chunk of
an array's grid is written, even one holding only the fill value, so a chunk that is not there is damage.
1: the same arrays without chunk checksums (a missing chunk read as the fill value); still read."""
READABLE_FORMATS = (1, 2)
CHECKSUMS_SINCE = 2
"""The first format whose chunks carry checksums and whose arrays are written whole (every chunk)."""
SPACE = "LPS"
UNIT = "mm"

STUDIES = "studies"
LABELS = "labels"
TARGETS = "targets"
STAGING = ".staging"
"""Folder inside the store where a worker writes a study before renaming it into ``studies/``."""
LOCK_FILE = ".ingest.lock"

IMAGE = "image"
LEVELS = "levels"
"""Optional subgroup of a stack holding its downsampled images for viewers (``spinedata.store.levels``)."""
INSTANCE_NUMBER = "instance_number"
POSITION = "position"
IMAGE_DIMS = ("slice", "row", "col")
POSITION_DIMS = ("slice", "xyz")
POINT_DIM = "point"
STUDY_DIM = "study"

COMPLETE = "complete"
WARNINGS = "warnings"

IMAGE_CHUNKS = (12, 128, 128)
"""Chunk shape of stack images (slice,row,col): a dozen slices by 128 pixels holds a 50 mm crop in a few
chunks, the fastest crops of the shapes compared in ``docs/benchmarks.md`` (Chunking)."""


IMAGE_BLOSC = ("lz4", 5, "bitshuffle")
"""Compressor of stack images, ``(cname, clevel, shuffle)`` of Blosc: LZ4 with bit shuffle, lossless;
chosen over zstd for write speed at a slightly bigger store (figures in ``docs/benchmarks.md``)."""

IMAGE_SHARDED = True
"""Stack images keep all their chunks in one file (Zarr v3 ``sharding_indexed``, one shard per stack):
chunks stay the unit of reading, and ingest writes one file per stack instead of one per chunk (creating
files was the largest system cost of ingest)."""


def image_compressor() -> BloscCodec:
    """``IMAGE_BLOSC`` as a zarr-python codec, for writing arrays like the store's with zarr itself."""
    from zarr.codecs import BloscCodec

    cname, clevel, shuffle = IMAGE_BLOSC
    return BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)


def image_chunks(shape: tuple[int, ...], nominal: tuple[int, ...] = IMAGE_CHUNKS) -> tuple[int, ...]:
    """The chunk shape of a stack: along each axis as many chunks as ``nominal`` needs, made (nearly)
    equal, e.g. 17 slices -> 2 chunks of 9 rather than 12 + 5; rows and columns rounded up to a multiple of
    8 (Blosc's bit shuffle works on groups of 8 values: chunks of other sizes were left uncompressed).
    Edge chunks are stored padded to a whole chunk; equal chunks leave little to pad, compress and write."""
    out = []
    for axis, (c, s) in enumerate(zip(nominal, shape, strict=True)):
        size = max(1, -(-s // -(-s // c))) if s > 0 else 1
        if axis > 0 and size > CHUNK_ALIGN:
            size = min(-(-size // CHUNK_ALIGN) * CHUNK_ALIGN, c)
        out.append(size)
    return tuple(out)


CHUNK_ALIGN = 8
"""Rows and columns of a chunk are a multiple of this (see ``image_chunks``)."""


# --- reading the layout (shared by the reader and the writer) ---------------------------------------------


def read_root_attrs(path: str | os.PathLike | ObjectPath) -> dict:
    """The root attributes of the store at ``path`` (a folder, or a URL: ``spinedata.store.urls``);
    ``StoreError`` if it is not a spinedata store."""
    root = store_location(path)
    meta = root / "zarr.json"
    try:
        text = meta.read_text()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        where = "expected a folder with zarr.json" if isinstance(root, Path) else "no zarr.json there"
        raise StoreError(f"no Zarr store at {str(root)!r} ({where}); create one with `spine ingest`") from None
    except OSError as error:
        raise StoreError(f"cannot read {meta}: {error}") from error
    try:
        attrs = json.loads(text).get("attributes", {})
    except (ValueError, AttributeError) as error:
        raise StoreError(f"cannot read {meta}: {error}") from error
    version = attrs.get(FORMAT_KEY)
    if version is None:
        raise StoreError(f"{str(root)!r} is a Zarr store but not a spinedata store (no {FORMAT_KEY!r} attribute)")
    if version not in READABLE_FORMATS:
        raise StoreError(
            f"{str(root)!r} has spinedata format {version!r}, this version reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}; re-ingest the data or install a matching spinedata"
        )
    return attrs


def study_markers(root: str | os.PathLike | ObjectPath) -> dict[str, dict]:
    """Study id -> the attributes of its ``zarr.json`` (``{}`` when missing or unreadable), for every folder
    under ``studies/``: one listing, the markers fetched at once. An ingest reads them once under its lock
    and passes them on (``complete_study_ids``, ``clean_stale``, ``Dataset``) instead of reading them again."""
    folders = subfolders(store_location(root) / STUDIES)
    with prefetched([folder / "zarr.json" for _, folder in folders]):  # a store at a URL: all at once
        return {name: marker(folder) for name, folder in folders}


def complete_study_ids(root: str | os.PathLike | ObjectPath, markers: Mapping[str, dict] | None = None) -> set[str]:
    """Ids of the studies under ``studies/`` whose ``complete`` attribute is true (``markers``: when read)."""
    markers = study_markers(root) if markers is None else markers
    return {name for name, attrs in markers.items() if attrs.get(COMPLETE) is True}


def marker(study_dir: Location) -> dict:
    """The attributes of a study folder's ``zarr.json`` (written last), ``{}`` when it has none."""
    try:
        attrs = json.loads((study_dir / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return attrs if isinstance(attrs, dict) else {}


def is_complete(study_dir: Location) -> bool:
    """Whether the study folder's ``complete`` attribute is true (it is written last)."""
    return marker(study_dir).get(COMPLETE) is True
