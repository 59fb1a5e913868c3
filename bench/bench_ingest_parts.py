"""Parts of `spine ingest` measured alone: imports, chunk compression, pixel reads, the labels at the end.

    .venv/bin/python bench/bench_ingest_parts.py --rounds 9

The figures behind the ingest section of docs/benchmarks.md that no whole run of ingest shows:

1. imports, each in fresh interpreters (median of ``--rounds``, wall seconds): numcodecs against Blosc's
   own binding after NumPy; ingest's modules with the garbage collector on and paused; NumPy's import
   CPU with OpenBLAS's default threads and with ``OPENBLAS_NUM_THREADS=1``;
2. compressing the chunks of the benchmark's 20 studies (``bench/bench_ingest.py`` writes them), CPU ms per
   DICOM file in one process, in interleaved rounds: numcodecs' Blosc, ``blosc.compress``, the encoder
   ingest uses (``fastwrite.blosc_encoder``), and LZ4 levels 1, 3 and 5 through it;
3. reading every file's bytes into one buffer: ``readinto`` against ``mmap`` plus a copy (CPU ms per file);
4. resolving the labels against the stacks and writing their table (ms), as ingest's last step does.
"""

from __future__ import annotations

import itertools
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ingest_data_parser, settle
from settle import record_deletion

ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1"}
"""What every torch-free spine command runs with (``cli/startup.py``)."""
IMPORTS = {
    "numcodecs (after numpy)": ("import numpy", "import numcodecs, numcodecs.blosc", ONE_BLAS_THREAD),
    "blosc (after numpy)": ("import numpy", "import blosc", ONE_BLAS_THREAD),
    "ingest's modules, collector on": ("import typer", "import spinedata.ingest.run", ONE_BLAS_THREAD),
    "ingest's modules, collector paused": ("import typer, gc; gc.disable()", "import spinedata.ingest.run",
                                           ONE_BLAS_THREAD),  # fmt: skip
    "numpy, OpenBLAS's default threads": ("", "import numpy", {"OPENBLAS_NUM_THREADS": None}),
    "numpy, OPENBLAS_NUM_THREADS=1": ("", "import numpy", ONE_BLAS_THREAD),
}
"""label -> (set-up, the import timed, environment: a value of None removes the variable)."""
PROBE = """
import time
{setup}
wall, cpu = time.perf_counter(), time.process_time()
{body}
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def import_cost(setup: str, body: str, env: dict[str, str | None]) -> tuple[float, float]:
    """``(wall s, CPU s)`` of ``body`` after ``setup`` in a fresh interpreter."""
    environment = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup, body=body)], capture_output=True,
                         text=True, check=True, env=environment).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def stack_images(images: Path):
    """``(n_files, stacks as ingest stores them, their headers)`` of every series under ``images``."""
    from spinedata.dicom import read_header
    from spinedata.ingest.worker import read_stack_for_store
    from spinedata.stacks import build_stacks

    n_files, arrays, series = 0, [], []
    for folder in sorted(p for p in images.glob("*/*") if p.is_dir()):
        files = sorted(folder.iterdir())
        n_files += len(files)
        stacks, _ = build_stacks([read_header(p) for p in files])
        arrays.extend(read_stack_for_store(members)[0] for _, members in stacks)
        series.append((folder.parent.name, folder.name, [geometry for geometry, _ in stacks]))
    return n_files, arrays, series


def chunks_of(image: np.ndarray) -> list[np.ndarray]:
    """The chunks of one stack as ingest compresses them (C-contiguous, edges padded with zeros)."""
    from spinedata.store.layout import image_chunks

    shape = image_chunks(image.shape)
    out = []
    for index in itertools.product(*(range(-(-n // c)) for n, c in zip(image.shape, shape, strict=True))):
        part = image[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, shape, strict=True))]
        block = np.zeros(shape, image.dtype)
        block[tuple(slice(0, s) for s in part.shape)] = part
        out.append(block)
    return out


def interleaved(functions: dict, rounds: int, per: int) -> dict[str, float]:
    """Median CPU ms per ``per`` items of each function, run in alternating order ``rounds`` times."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.process_time()
            functions[name]()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(t) / per * 1000 for name, t in times.items()}


def main() -> None:
    parser = ingest_data_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    images = args.data / "train_images"
    if not images.is_dir():
        sys.exit(f"{images} is missing: run bench/bench_ingest.py first")
    settle(args)

    print("| import (fresh interpreters) | wall s (median) | CPU s (median) |")
    print("|---|---|---|")
    for label, (setup, body, env) in IMPORTS.items():
        runs = [import_cost(setup, body, env) for _ in range(args.rounds)]
        print(f"| {label} | {statistics.median(r[0] for r in runs):.3f} | {statistics.median(r[1] for r in runs):.3f} |")

    import blosc
    import numcodecs

    from spinedata.store.fastwrite import blosc_config, blosc_encoder

    blosc.set_nthreads(1)
    numcodecs.blosc.set_nthreads(1)
    n_files, arrays, series = stack_images(images)
    flat = [c.view(np.uint8).reshape(-1) for image in arrays for c in chunks_of(image)]
    config = blosc_config("lz4", 5, "bitshuffle", 2)
    reference = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=2, blocksize=0, typesize=2)
    encoders = {level: blosc_encoder(blosc_config("lz4", level, "bitshuffle", 2)) for level in (1, 3, 5)}
    sizes = {level: sum(len(encoders[level](c)) for c in flat) for level in encoders}
    compress = {
        "numcodecs Blosc.encode (level 5)": lambda: [reference.encode(c) for c in flat],
        "blosc.compress (level 5)": lambda: [blosc.compress(c, typesize=2, clevel=5, shuffle=blosc.BITSHUFFLE,
                                                            cname="lz4") for c in flat],  # fmt: skip
        **{f"fastwrite.blosc_encoder (level {level})": (lambda e=encoders[level]: [e(c) for c in flat])
           for level in encoders},  # fmt: skip
    }
    print(f"\n{n_files} files, {len(flat)} chunks; LZ4 + bit shuffle ({config['typesize']}-byte values)")
    print("| compressing | CPU ms per file | MB |")
    print("|---|---|---|")
    for name, ms in interleaved(compress, args.rounds, n_files).items():
        level = int(name.rsplit(" ", 1)[1].rstrip(")"))
        print(f"| {name} | {ms:.3f} | {sizes[level] / 1e6:.1f} |")

    files = sorted(str(p) for p in images.glob("*/*/*") if p.is_file())
    sizes_b = [os.path.getsize(f) for f in files]
    buffer = np.empty(max(sizes_b), np.uint8)

    def by_readinto() -> None:
        for name, size in zip(files, sizes_b, strict=True):
            with open(name, "rb") as handle:
                handle.readinto(memoryview(buffer)[:size])

    def by_mmap() -> None:
        for name, size in zip(files, sizes_b, strict=True):
            with open(name, "rb") as handle, mmap.mmap(handle.fileno(), size, prot=mmap.PROT_READ) as mapped:
                buffer[:size] = np.frombuffer(mapped, np.uint8)

    print("\n| reading whole files (page cache warm) | CPU ms per file |")
    print("|---|---|")
    for name, ms in interleaved({"readinto": by_readinto, "mmap + copy": by_mmap}, args.rounds, len(files)).items():
        print(f"| {name} | {ms:.3f} |")

    from spinedata.labels import read_label_coordinates, resolve_labels
    from spinedata.store import layout as L
    from spinedata.store.tables import replace_table
    from spinedata.store.writer import create_or_open_store

    by_series = {(study, sid): list(enumerate(geometries)) for study, sid, geometries in series}
    labels, _ = read_label_coordinates(args.data / "train_label_coordinates.csv")
    scratch = Path(tempfile.mkdtemp(dir=args.data.parent, prefix="labels_"))
    try:
        spent = []
        for k in range(args.rounds):
            store = create_or_open_store(scratch / f"{k}.zarr", split="train", source="bench")
            start = time.perf_counter()
            resolved, _ = resolve_labels(labels, lambda s, r: by_series.get((s, r), "series not in the store"))
            replace_table(store, L.LABELS, resolved, L.POINT_DIM)
            spent.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(scratch)
        record_deletion()
    print(f"\nresolving {len(labels['study_id'])} labels and writing their table: "
          f"{statistics.median(spent) * 1000:.1f} ms (median of {args.rounds})")


if __name__ == "__main__":
    main()
