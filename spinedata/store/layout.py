"""Names, format version and encodings of the spinedata Zarr store (see ``docs/store.md``).

::

    DATASET.zarr/                     attrs: spinedata_format, space "LPS", unit "mm", source, split
      studies/<study_id>/             attrs: complete (true once written whole), warnings, study_id
        <series_id>/                  attrs: description, role, SeriesInstanceUID
          <k>/                        one stack; attrs = StackGeometry.to_attrs()
            image            (slice,row,col)
            instance_number  (slice,)
            position         (slice,xyz)   LPS mm
      labels/                         1-D column arrays, dimension "point"
      targets/                        1-D column arrays, dimension "study"
      .staging/                       plain folder (not a Zarr node): studies being written
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
INSTANCE_NUMBER = "instance_number"
POSITION = "position"
IMAGE_DIMS = ("slice", "row", "col")
POSITION_DIMS = ("slice", "xyz")
POINT_DIM = "point"
STUDY_DIM = "study"

COMPLETE = "complete"
WARNINGS = "warnings"

IMAGE_CHUNKS = (12, 128, 128)
"""Chunk shape of stack images (slice,row,col): a dozen slices by 128 pixels (about 6-12 cm) holds a
50 mm crop in 1-8 chunks; among the fastest crops of the candidates measured by ``bench/bench_store_chunks.py``
(64-pixel chunks read crops 2x slower and write 2x slower; whole slices read crops 2x slower)."""


IMAGE_BLOSC = ("lz4", 5, "bitshuffle")
"""Compressor of stack images, ``(cname, clevel, shuffle)`` of Blosc: LZ4 with bit shuffle, lossless.
Against zstd level 1 + bit shuffle on synthetic studies: about 10 % bigger, writing a stack 1.3-1.7x faster
(compression was a fifth of ingest's time with zstd); crops read as fast; LZ4's level (1, 5, 9) hardly
matters (``bench/bench_store_chunks.py``, figures in ``docs/benchmarks.md``)."""

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

