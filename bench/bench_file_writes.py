"""What writing costs on this machine: new files against rewriting pages already cached, one process
against two at once, and memory mapped fresh against memory reused.

    .venv/bin/python bench/bench_file_writes.py --mb 100

Why: ``spine ingest`` (two worker processes) and dcm2niix (one) both spend much of their time creating
files; how that cost behaves (per byte, per file, and whether two processes get twice the throughput) says
what ingest can gain from fewer bytes, fewer files or more workers. Each case writes ``--mb`` megabytes in
pieces of ``--piece-kb`` (the size of one DICOM file's share of the store), in processes of their own,
into a scratch folder under ``--dir`` that is removed at the end (run nothing file-heavy for five minutes
after it: see the ingest benchmark's notes on deletions). Prints a Markdown table of CPU seconds (user +
system) per case, per process.
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import shutil
import tempfile
import time
from multiprocessing import Process, Queue
from pathlib import Path

from common import print_table


def new_files(folder: str, pieces: int, payload: bytes) -> None:
    """Every piece a new file (what ingest's stores and dcm2niix's NIfTI files need)."""
    for k in range(pieces):
        with open(os.path.join(folder, f"f{k}"), "wb", buffering=0) as handle:
            handle.write(payload)


def one_new_file(folder: str, pieces: int, payload: bytes) -> None:
    """The same bytes appended to one new file: new page-cache pages, one inode."""
    with open(os.path.join(folder, "big"), "wb", buffering=0) as handle:
        for _ in range(pieces):
            handle.write(payload)


def rewrite(folder: str, pieces: int, payload: bytes) -> None:
    """The same bytes written over pages already cached (a file of 16 pieces, written in turn)."""
    path = os.path.join(folder, "cached")
    with open(path, "wb") as handle:
        handle.write(payload * 16)
    start = time.process_time()
    descriptor = os.open(path, os.O_WRONLY)
    for k in range(pieces):
        os.pwrite(descriptor, payload, (k % 16) * len(payload))
    os.close(descriptor)
    return time.process_time() - start


def empty_files(folder: str, pieces: int, payload: bytes) -> None:
    """A small file per piece (a ``zarr.json``): the cost of creating files alone."""
    for k in range(pieces):
        with open(os.path.join(folder, f"e{k}"), "wb", buffering=0) as handle:
            handle.write(b"{}")


def fresh_memory(folder: str, pieces: int, payload: bytes) -> None:
    """Each piece copied into memory freshly mapped for it and unmapped after (what glibc does with a large
    array by default: every page faulted in and zeroed by the kernel)."""
    for _ in range(pieces):
        with mmap.mmap(-1, len(payload)) as area:
            area.write(payload)


def reused_memory(folder: str, pieces: int, payload: bytes) -> None:
    """Each piece copied into one buffer that stays mapped (what glibc does when told to keep freed memory
    with ``mallopt``; ingest no longer asks it to: docs/benchmarks.md, "Speed tricks")."""
    with mmap.mmap(-1, len(payload)) as area:
        for _ in range(pieces):
            area.seek(0)
            area.write(payload)


CASES = {
    "new file per piece": new_files,
    "one new file": one_new_file,
    "rewriting cached pages": rewrite,
    "empty files (count only)": empty_files,
    "fresh memory per piece": fresh_memory,
    "one reused buffer": reused_memory,
}


def _worker(case: str, folder: str, pieces: int, piece_bytes: int, results: Queue) -> None:
    own = tempfile.mkdtemp(dir=folder)
    payload = os.urandom(piece_bytes)
    start = time.process_time()
    timed = CASES[case](own, pieces, payload)
    results.put(timed if timed is not None else time.process_time() - start)


def run(case: str, processes: int, folder: str, pieces: int, piece_bytes: int) -> list[float]:
    results: Queue = Queue()
    workers = [Process(target=_worker, args=(case, folder, pieces, piece_bytes, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(results.get() for _ in workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--piece-kb", type=int, default=128)
    parser.add_argument("--dir", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    piece_bytes = args.piece_kb * 1024
    pieces = int(args.mb * 1e6 / piece_bytes)
    scratch = tempfile.mkdtemp(dir=args.dir, prefix="file_writes_")
    try:
        rows = [(case, run(case, 1, scratch, pieces, piece_bytes), run(case, 2, scratch, pieces, piece_bytes))
                for case in CASES]  # fmt: skip
    finally:
        shutil.rmtree(scratch)
    load = os.getloadavg()
    print(f"{pieces} pieces of {args.piece_kb} KiB ({args.mb:.0f} MB) per process; load average {load[0]:.1f}; "
          f"max RSS of this script {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    print_table(["case", "1 process: CPU s", "2 processes at once: CPU s each"],
                ([case, f"{alone[0]:.3f}", ", ".join(f"{t:.3f}" for t in together)] for case, alone, together in rows))


if __name__ == "__main__":
    main()
