"""Crops per second of ``spinedata.crops.crop_around`` for the three stage-2 settings.

Sources: in-memory NumPy stacks, Zarr arrays chunked and compressed like the store's images (read lazily
through xarray), and optionally a real store (``--store``: every labelled point of its first studies).
Single process, one thread of work; the percentile range of each stack is computed once, outside the timing.

    .venv/bin/python bench/bench_crops.py [--repeats 200] [--store lumbar.zarr --studies 5]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr
import zarr

from spinedata.crops import crop_around
from spinedata.geometry import StackGeometry
from spinedata.intensity import stack_intensity_range


@dataclass(frozen=True)
class Setting:
    name: str
    side_mm: float
    n_slices: int
    shape: tuple[int, int, int]  # a typical stack of that series
    pixel_spacing: tuple[float, float]
    slice_step_mm: float
    orientation: tuple[float, ...]


# reference stage-2 settings (seed solution): spinal and foraminal 50 mm x 11 slices, subarticular 40 mm x 7
SETTINGS = (
    Setting("spinal (Sag T2, 50 mm, 11 sl)", 50.0, 11, (17, 384, 384), (0.6875, 0.6875), 3.3,
            (0, 1, 0, 0, 0, -1)),
    Setting("foraminal (Sag T1, 50 mm, 11 sl)", 50.0, 11, (17, 320, 320), (0.75, 0.7), 3.3,
            (0, 1, 0, 0, 0, -1)),
    Setting("subarticular (Ax T2, 40 mm, 7 sl)", 40.0, 7, (45, 320, 320), (0.625, 0.625), 4.0,
            (1, 0, 0, 0, 1, 0)),
)


def make_stack(setting: Setting, rng: np.random.Generator) -> tuple[np.ndarray, StackGeometry]:
    n, rows, cols = setting.shape
    r, c = np.asarray(setting.orientation[:3], float), np.asarray(setting.orientation[3:], float)
    positions = np.arange(n)[:, None] * setting.slice_step_mm * np.cross(r, c)
    geometry = StackGeometry.from_positions(setting.orientation, setting.pixel_spacing, positions,
                                            np.arange(1, n + 1), (rows, cols))
    volume = rng.integers(0, 2000, size=setting.shape, dtype=np.uint16)
    return volume, geometry


def as_store_like_zarr(volume: np.ndarray, root: str, name: str) -> xr.DataArray:
    """Write ``volume`` as a Zarr v3 array chunked and compressed like the store's images; open lazily."""
    try:
        from spinedata.store.layout import image_chunks, image_compressor

        chunks, compressors = image_chunks(volume.shape), [image_compressor()]
    except ImportError:  # store not installed: its documented defaults
        chunks, compressors = tuple(min(c, s) for c, s in zip((12, 128, 128), volume.shape, strict=True)), "auto"
    array = zarr.create_array(f"{root}/{name}", shape=volume.shape, dtype=volume.dtype, chunks=chunks,
                              compressors=compressors, dimension_names=("slice", "row", "col"))
    array[...] = volume
    return xr.DataArray(zarr.open_array(f"{root}/{name}", mode="r"), dims=("slice", "row", "col"))


def time_crops(volume, geometry: StackGeometry, setting: Setting, size: int, repeats: int, seed: int) -> float:
    """Crops per second around random points inside the stack (with training jitter)."""
    rng = np.random.default_rng(seed)
    value_range = stack_intensity_range(volume)
    n, rows, cols = geometry.shape
    voxels = np.column_stack([rng.integers(0, n, repeats), rng.uniform(0.2, 0.8, repeats) * rows,
                              rng.uniform(0.2, 0.8, repeats) * cols])
    points = geometry.voxel_to_world(voxels)
    start = time.perf_counter()
    for point in points:
        crop_around(volume, geometry, point, setting.side_mm, setting.n_slices, size,
                    intensity_range=value_range, jitter_mm=5.0, jitter_slices=2, rng=rng)
    return repeats / (time.perf_counter() - start)


def bench_store(path: str, n_studies: int, size: int) -> None:
    import spinedata as sd
    from spinedata.conditions import CONDITION_ROLE

    by_group = {"Spinal": SETTINGS[0], "Neural Foraminal": SETTINGS[1], "Subarticular": SETTINGS[2]}
    ds = sd.open_dataset(path)
    labels = ds.labels
    labels = labels[labels["study_id"].isin(ds.study_ids[:n_studies]) & (labels["stack"] >= 0)]
    counts = {key: 0 for key in by_group}
    seconds = {key: 0.0 for key in by_group}
    for (study_id, series_id, stack_index), rows in labels.groupby(["study_id", "series_id", "stack"]):
        stack = ds.study(study_id).series[str(series_id)].stacks[int(stack_index)]
        value_range = stack_intensity_range(stack.image)
        for row in rows.itertuples():
            key = next(k for k in by_group if k in row.condition)
            setting = by_group[key]
            assert CONDITION_ROLE[row.condition]  # a known condition
            start = time.perf_counter()
            crop_around(stack.image, stack.geometry, [row.world_x, row.world_y, row.world_z], setting.side_mm,
                        setting.n_slices, size, intensity_range=value_range)
            seconds[key] += time.perf_counter() - start
            counts[key] += 1
    for key, setting in by_group.items():
        if counts[key]:
            print(f"| {setting.name} | store {path} ({counts[key]} labels) | {size} | "
                  f"{counts[key] / seconds[key]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 96])
    parser.add_argument("--store", default=None, help="a spinedata store to crop every label of")
    parser.add_argument("--studies", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}, zarr {zarr.__version__}")
    print("| setting | source | size | crops/s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for index, setting in enumerate(SETTINGS):
            volume, geometry = make_stack(setting, rng)
            lazy = as_store_like_zarr(volume, root, f"s{index}")
            for size in args.sizes:
                for source, data in (("numpy in memory", volume), ("zarr, store chunks", lazy)):
                    rate = time_crops(data, geometry, setting, size, args.repeats, seed=index)
                    print(f"| {setting.name} | {source} | {size} | {rate:.0f} |")
    if args.store:
        bench_store(args.store, args.studies, args.sizes[0])


if __name__ == "__main__":
    main()
