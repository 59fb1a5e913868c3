"""Chunk shape and compressor of stack images: write time, size, and the time to read a crop.

    .venv/bin/python bench/bench_store_chunks.py --store bench/out/ingest/out.zarr --crops 200 --repeats 3

Takes every stack of an existing store (e.g. the one ``bench_ingest.py`` leaves behind: synthetic studies at
real matrix sizes), rewrites it with each candidate chunk shape, compressor and file layout (a file per
chunk, or one Zarr v3 shard per stack; edge chunks clipped, or chunks made equal) with ``fastwrite``, as
ingest does, and reads ``--crops`` random crops the way graders do: a dozen slices by 50 mm square around a random
point (``--slices``, ``--side-mm``), through zarr-python. Prints a Markdown table (ms per stack written,
compression ratio, files per stack, ms per crop read, ms per whole-stack read).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

import spinedata as sd
from spinedata.store.fastwrite import write_array
from spinedata.store.layout import image_chunks

CANDIDATES = [
    # (chunk shape, blosc (cname, clevel, shuffle) or None, one shard per stack, equal chunks)
    ((12, 128, 128), ("lz4", 5, "bitshuffle"), True, True),
    ((12, 128, 128), ("lz4", 5, "bitshuffle"), False, True),
    ((12, 128, 128), ("lz4", 5, "bitshuffle"), False, False),
    ((12, 128, 128), ("zstd", 1, "bitshuffle"), False, False),
    ((12, 128, 128), ("zstd", 1, "bitshuffle"), True, True),
    ((12, 128, 128), ("lz4", 1, "bitshuffle"), True, True),
    ((12, 128, 128), ("lz4", 9, "bitshuffle"), True, True),
    ((12, 128, 128), ("lz4", 5, "shuffle"), True, True),
    ((12, 64, 64), ("lz4", 5, "bitshuffle"), True, True),
    ((16, 256, 256), ("lz4", 5, "bitshuffle"), True, True),
    ((1, 512, 512), ("lz4", 5, "bitshuffle"), False, False),
    ((12, 128, 128), None, False, False),
]
"""The first is the store's layout (``spinedata.store.layout``)."""


def chunks_for(shape: tuple[int, ...], chunks: tuple[int, ...], equal: bool) -> tuple[int, ...]:
    """``chunks`` clipped to ``shape``; ``equal``: as many chunks per axis, made equal and aligned as the
    store does (``spinedata.store.layout.image_chunks``)."""
    if equal:
        return image_chunks(shape, chunks)
    return tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--crops", type=int, default=300)
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--side-mm", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ds = sd.open_dataset(args.store)
    stacks = [st.read() for sid in ds.study_ids for s in ds.study(sid).series.values() for st in s.stacks]
    spacings = [st.pixel_spacing for sid in ds.study_ids for s in ds.study(sid).series.values() for st in s.stacks]
    raw = sum(a.nbytes for a in stacks)
    rng = np.random.default_rng(args.seed)
    boxes = []  # the same crops for every candidate: (stack, slices, rows, cols)
    for k in rng.integers(0, len(stacks), args.crops):
        n, rows, cols = stacks[k].shape
        half_r, half_c = (int(args.side_mm / spacing / 2) for spacing in spacings[k])
        s0 = rng.integers(0, max(1, n - args.slices + 1))
        r0, c0 = rng.integers(0, max(1, rows - 2 * half_r)), rng.integers(0, max(1, cols - 2 * half_c))
        boxes.append((k, slice(s0, s0 + args.slices), slice(r0, r0 + 2 * half_r), slice(c0, c0 + 2 * half_c)))
    print(f"{len(stacks)} stacks, {raw / 1e6:.0f} MB, dtypes {sorted({str(a.dtype) for a in stacks})}")
    results: dict[int, list[tuple[float, float, float, float, float]]] = {i: [] for i in range(len(CANDIDATES))}
    for _ in range(args.repeats):  # round robin, so that a change of machine load hits every candidate
        for i, candidate in enumerate(CANDIDATES):
            results[i].append(measure(stacks, boxes, *candidate))
    print(f"median of {args.repeats} round-robin runs")
    print("| chunks | compressor | files | write ms/stack | ratio | files/stack | crop ms | whole stack ms |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (chunks, blosc, shard, equal) in enumerate(CANDIDATES):
        write_ms, ratio, files, crop_ms, whole_ms = (statistics.median(v) for v in zip(*results[i], strict=True))
        name = f"{blosc[0]} {blosc[1]} {blosc[2]}" if blosc else "none"
        layout = ("one shard" if shard else "a file per chunk") + (", equal chunks" if equal else "")
        print(f"| {chunks} | {name} | {layout} | {write_ms:.1f} | {ratio:.2f} | {files:.0f} | {crop_ms:.2f} "
              f"| {whole_ms:.1f} |")


def measure(stacks, boxes, chunks, blosc, shard, equal) -> tuple[float, float, float, float, float]:
    """``(write ms/stack, compression ratio, chunk files/stack, ms/crop, ms/whole stack)`` of one candidate."""
    raw = sum(a.nbytes for a in stacks)
    folder = Path(tempfile.mkdtemp(prefix="chunks"))
    try:
        start = time.perf_counter()
        for k, image in enumerate(stacks):
            write_array(folder / str(k), image, chunks=chunks_for(image.shape, chunks, equal),
                        dimension_names=("slice", "row", "col"), blosc=blosc, shard=shard)
        write_ms = (time.perf_counter() - start) / len(stacks) * 1000
        files = [p for p in folder.rglob("*") if p.is_file()]
        ratio = raw / sum(p.stat().st_size for p in files)
        arrays = [zarr.open_array(folder / str(k), mode="r") for k in range(len(stacks))]
        start = time.perf_counter()
        for k, *box in boxes:
            arrays[k][tuple(box)]
        crop_ms = (time.perf_counter() - start) / len(boxes) * 1000
        start = time.perf_counter()
        for array in arrays:
            array[...]
        whole_ms = (time.perf_counter() - start) / len(arrays) * 1000
    finally:
        shutil.rmtree(folder)
    return write_ms, ratio, (len(files) - len(stacks)) / len(stacks), crop_ms, whole_ms

if __name__ == "__main__":
    main()
