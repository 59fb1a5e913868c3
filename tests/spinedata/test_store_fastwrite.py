"""fastwrite writes what zarr-python would: same metadata, same chunk and shard bytes (with the ``crc32c``
codec ending every chunk), read back identically."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from spinedata.errors import StoreError
from spinedata.store.fastwrite import write_array, write_group

DOT_KEYS = {"name": "default", "separator": "."}
"""The chunk key encoding fastwrite uses (``c.0.0.0``)."""


@pytest.mark.parametrize(
    ("dtype", "shape", "chunks", "blosc"),
    [
        ("<u2", (13, 40, 33), (12, 16, 16), ("zstd", 1, "bitshuffle")),  # edge chunks on every axis
        (">i2", (5, 8, 8), (12, 128, 128), ("lz4", 5, "shuffle")),  # big-endian input, one padded chunk
        ("<i4", (3, 7, 9), (2, 4, 4), ("zstd", 1, "noshuffle")),
        ("<f4", (4, 6, 6), (4, 6, 6), ("zstd", 3, "bitshuffle")),
        ("|u1", (2, 5, 5), (1, 5, 5), None),
        ("<i8", (7,), (7,), None),
        ("<f8", (7, 3), (7, 3), None),
    ],
)
def test_fastwrite_matches_zarr_python(tmp_path, dtype, shape, chunks, blosc):
    rng = np.random.default_rng(1)
    data = (rng.normal(100, 50, shape)).astype(dtype)
    dims = ("slice", "row", "col")[: len(shape)] if len(shape) != 2 else ("slice", "xyz")
    attrs = {"affine": np.eye(4).tolist(), "flags": []}
    write_array(tmp_path / "fast", data, chunks=chunks, dimension_names=dims, attributes=attrs, blosc=blosc)
    reference = zarr.create_array(
        tmp_path / "ref", shape=shape, dtype=data.dtype.newbyteorder("<"), chunks=chunks, fill_value=0,
        compressors=[*([BloscCodec(cname=blosc[0], clevel=blosc[1], shuffle=blosc[2])] if blosc else []),
                     Crc32cCodec()],
        dimension_names=dims, attributes=attrs, write_data=True, chunk_key_encoding=DOT_KEYS,
    )  # fmt: skip
    reference[...] = data
    fast = zarr.open_array(tmp_path / "fast", mode="r")
    assert fast.metadata.to_dict() == zarr.open_array(tmp_path / "ref", mode="r").metadata.to_dict()
    np.testing.assert_array_equal(fast[...], data)
    assert fast[...].dtype == data.dtype.newbyteorder("=")
    assert _files(tmp_path / "fast") == _files(tmp_path / "ref")  # every chunk, byte for byte


def _files(folder) -> dict[str, bytes]:
    """Every chunk file of an array folder (not ``zarr.json``, whose key order may differ) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "zarr.json"}


@pytest.mark.parametrize(
    ("shape", "chunks"), [((13, 40, 33), (12, 16, 16)), ((3, 8, 8), (12, 128, 128)), ((30, 50, 70), (9, 16, 24))]
)
def test_fastwrite_shards_match_zarr_python(tmp_path, shape, chunks):
    data = np.random.default_rng(2).normal(100, 50, shape).astype("<u2")
    dims = ("slice", "row", "col")
    write_array(tmp_path / "fast", data, chunks=chunks, dimension_names=dims, blosc=("lz4", 5, "bitshuffle"),
                shard=True)  # fmt: skip
    shards = tuple(-(-n // c) * c for n, c in zip(shape, chunks, strict=True))
    reference = zarr.create_array(
        tmp_path / "ref", shape=shape, dtype="<u2", chunks=chunks, shards=shards, fill_value=0,
        compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"), Crc32cCodec()], dimension_names=dims,
        chunk_key_encoding=DOT_KEYS,
    )  # fmt: skip
    reference[...] = data
    fast = zarr.open_array(tmp_path / "fast", mode="r")
    assert fast.metadata.to_dict() == zarr.open_array(tmp_path / "ref", mode="r").metadata.to_dict()
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == ["c.0.0.0", "zarr.json"]  # one file
    assert _files(tmp_path / "fast") == _files(tmp_path / "ref")  # chunks in zarr's (Morton) order, same index
    np.testing.assert_array_equal(fast[...], data)
    np.testing.assert_array_equal(fast[1:3, 5:30, 2:7], data[1:3, 5:30, 2:7])  # a crop across chunks
    write_group(tmp_path / "g", {})
    write_array(tmp_path / "g" / "image", data, chunks=chunks, dimension_names=dims, shard=True)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "g", consolidated=False)["image"].values, data)


def test_fastwrite_groups_open_in_xarray(tmp_path):
    write_group(tmp_path / "g", {"affine": [[1.0]]})
    write_array(tmp_path / "g" / "image", np.arange(24, dtype=np.uint16).reshape(2, 3, 4), chunks=(1, 3, 4),
                dimension_names=("slice", "row", "col"), blosc=("zstd", 1, "bitshuffle"))  # fmt: skip
    ds = xr.open_zarr(tmp_path / "g", consolidated=False)
    assert ds.attrs["affine"] == [[1.0]] and ds["image"].dims == ("slice", "row", "col")
    np.testing.assert_array_equal(ds["image"].values, np.arange(24).reshape(2, 3, 4))


def test_fastwrite_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(StoreError, match="dtype"):
        write_array(tmp_path / "a", np.zeros(3, complex), chunks=(3,), dimension_names=("x",))
    with pytest.raises(StoreError, match="must match"):
        write_array(tmp_path / "b", np.zeros((3, 3)), chunks=(3,), dimension_names=("x",))
    write_array(tmp_path / "c", np.zeros(3), chunks=(3,), dimension_names=("x",))
    with pytest.raises(FileExistsError):
        write_array(tmp_path / "c", np.zeros(3), chunks=(3,), dimension_names=("x",))
    for blosc, reason in [(("nope", 5, "shuffle"), "no compressor"), (("lz4", 12, "shuffle"), "level"),
                          (("lz4", 5, "sideways"), "shuffle must be")]:  # fmt: skip
        with pytest.raises(StoreError, match=reason):
            write_array(tmp_path / f"d{reason}", np.zeros(3), chunks=(3,), dimension_names=("x",), blosc=blosc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # refused arrays leave nothing behind


@pytest.mark.parametrize("values", [["1001", "L4/L5", "", "Ünïcode"], []])
def test_fastwrite_strings_read_back_in_zarr_and_xarray(tmp_path, values):
    data = np.array(values, dtype=object)
    write_group(tmp_path / "t", {})
    write_array(tmp_path / "t" / "s", data, chunks=(max(len(values), 1),), dimension_names=("point",))
    reference = zarr.create_array(tmp_path / "ref", shape=(len(values),), dtype=str, chunks=(max(len(values), 1),),
                                  compressors=Crc32cCodec(), dimension_names=("point",),
                                  chunk_key_encoding=DOT_KEYS)  # fmt: skip
    if values:
        reference[...] = data
        assert (tmp_path / "t" / "s" / "c.0").read_bytes() == (tmp_path / "ref" / "c.0").read_bytes()
    fast = zarr.open_array(tmp_path / "t" / "s", mode="r")
    assert fast.metadata.to_dict() == zarr.open_array(tmp_path / "ref", mode="r").metadata.to_dict()
    assert fast[...].tolist() == values
    assert [str(v) for v in xr.open_zarr(tmp_path / "t", consolidated=False)["s"].values] == values
