"""Chunk shape and compressor of stack images: write time, size, and the time to read a crop.

    .venv/bin/python bench/bench_store_chunks.py --store bench/out/ingest/out.zarr --crops 300

Takes every stack of an existing store (e.g. the one ``bench_ingest.py`` leaves behind: synthetic studies at
real matrix sizes), rewrites it with each candidate chunk shape and compressor (``fastwrite``, as ingest
does), and reads ``--crops`` random crops the way graders do: a dozen slices by 50 mm square around a random
point (``--slices``, ``--side-mm``), through zarr-python. Prints a Markdown table (ms per stack written,
compression ratio, files per stack, ms per crop read, ms per whole-stack read).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

import spinedata as sd
from spinedata.store.fastwrite import write_array

CANDIDATES = [
    ((12, 128, 128), ("lz4", 5, "bitshuffle")),
    ((12, 128, 128), ("zstd", 1, "bitshuffle")),
    ((12, 64, 64), ("lz4", 5, "bitshuffle")),
    ((8, 128, 128), ("lz4", 5, "bitshuffle")),
    ((16, 256, 256), ("lz4", 5, "bitshuffle")),
    ((1, 512, 512), ("lz4", 5, "bitshuffle")),
    ((12, 128, 128), None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--crops", type=int, default=300)
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--side-mm", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ds = sd.open_dataset(args.store)
    stacks = [st.read() for sid in ds.study_ids for s in ds.study(sid).series.values() for st in s.stacks]
    spacings = [st.pixel_spacing for sid in ds.study_ids for s in ds.study(sid).series.values() for st in s.stacks]
    raw = sum(a.nbytes for a in stacks)
    rng = np.random.default_rng(args.seed)
    picks = rng.integers(0, len(stacks), args.crops)
    print(f"{len(stacks)} stacks, {raw / 1e6:.0f} MB, dtypes {sorted({str(a.dtype) for a in stacks})}")
    print("| chunks | compressor | write ms/stack | ratio | files/stack | crop ms | whole stack ms |")
    print("|---|---|---|---|---|---|---|")
    for chunks, blosc in CANDIDATES:
        folder = Path(tempfile.mkdtemp(prefix="chunks"))
        start = time.perf_counter()
        for k, image in enumerate(stacks):
            clipped = tuple(min(c, s) for c, s in zip(chunks, image.shape, strict=True))
            write_array(folder / str(k), image, chunks=clipped, dimension_names=("slice", "row", "col"), blosc=blosc)
        write_ms = (time.perf_counter() - start) / len(stacks) * 1000
        files = [p for p in folder.rglob("*") if p.is_file()]
        ratio = raw / sum(p.stat().st_size for p in files)
        arrays = [zarr.open_array(folder / str(k), mode="r") for k in range(len(stacks))]
        start = time.perf_counter()
        for k in picks:
            n, rows, cols = stacks[k].shape
            half_r = int(args.side_mm / spacings[k][0] / 2)
            half_c = int(args.side_mm / spacings[k][1] / 2)
            s0 = rng.integers(0, max(1, n - args.slices + 1))
            r0, c0 = rng.integers(0, max(1, rows - 2 * half_r)), rng.integers(0, max(1, cols - 2 * half_c))
            arrays[k][s0 : s0 + args.slices, r0 : r0 + 2 * half_r, c0 : c0 + 2 * half_c]
        crop_ms = (time.perf_counter() - start) / len(picks) * 1000
        start = time.perf_counter()
        for array in arrays:
            array[...]
        whole_ms = (time.perf_counter() - start) / len(arrays) * 1000
        name = f"{blosc[0]} {blosc[1]} {blosc[2]}" if blosc else "none"
        print(f"| {chunks} | {name} | {write_ms:.1f} | {ratio:.2f} | {(len(files) - len(stacks)) / len(stacks):.0f} "
              f"| {crop_ms:.2f} | {whole_ms:.1f} |")
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
