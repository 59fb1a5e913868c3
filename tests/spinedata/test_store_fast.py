"""The store's speed tricks (``spinedata.store._fast``) switched off give the same arrays through zarr-python."""

from __future__ import annotations

import numpy as np
import pytest

from spinedata.store._fast import read_small_array, write_array
from spinedata.store.integrity import read_array, read_with_zarr


@pytest.mark.parametrize("off", ["", "fastwrite"])
def test_arrays_written_either_way_read_back_the_same(tmp_path, monkeypatch, off):
    monkeypatch.setenv("SPINE_TUNING_OFF", off)
    image = np.arange(5 * 33 * 40, dtype=np.int16).reshape(5, 33, 40)
    write_array(tmp_path / "image", image, chunks=(3, 16, 16), dimension_names=("slice", "row", "col"),
                blosc=("lz4", 5, "bitshuffle"), shard=True)  # fmt: skip
    positions = np.linspace(0, 1, 15).reshape(5, 3)
    write_array(tmp_path / "positions", positions, chunks=(5, 3), dimension_names=("slice", "xyz"))
    np.testing.assert_array_equal(read_with_zarr(tmp_path / "image"), image)
    np.testing.assert_array_equal(read_array(tmp_path, tmp_path / "positions", every_chunk=True), positions)


def test_small_arrays_are_read_through_zarr_when_the_shortcut_is_off(tmp_path, monkeypatch):
    positions = np.linspace(0, 1, 15).reshape(5, 3)
    write_array(tmp_path / "positions", positions, chunks=(5, 3), dimension_names=("slice", "xyz"))
    np.testing.assert_array_equal(read_small_array(tmp_path / "positions", every_chunk=True), positions)
    monkeypatch.setenv("SPINE_TUNING_OFF", "small_read")
    assert read_small_array(tmp_path / "positions", every_chunk=True) is None
    np.testing.assert_array_equal(read_array(tmp_path, tmp_path / "positions", every_chunk=True), positions)
