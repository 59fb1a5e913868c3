"""Waiting for the file system to settle after a benchmark deleted its outputs.

On this machine's ext4 (no journal), creating a file or folder skips every inode freed in the last 60 s,
or in the last 360 s while the inode's table block is still dirty, which creating new inodes next to them
keeps it. Right after a benchmark deleted thousands of outputs, each new file costs ~0.5 ms instead of
~0.04 ms (``bench/bench_file_writes.py``, docs/benchmarks.md), and ingest, which creates seven times more
files than dcm2niix, is measured in a state no user with a journalled file system ever sees. The ingest
benchmarks record when they delete their outputs and wait, before timing anything, until that is this long
ago.
"""

from __future__ import annotations

import time
from pathlib import Path

SETTLE_SECONDS = 360.0
"""ext4's longest window for a recently deleted inode (``RECENTCY_MIN`` + ``RECENTCY_DIRTY``)."""
MARK = Path(__file__).resolve().parent / "out" / ".last_deletion"
"""When a benchmark last deleted outputs (one mark for every benchmark)."""


def record_deletion() -> None:
    """Note that a benchmark deleted outputs just now."""
    MARK.parent.mkdir(parents=True, exist_ok=True)
    MARK.write_text(f"{time.time():.0f}\n")


def wait_until_settled(seconds: float = SETTLE_SECONDS) -> float:
    """Sleep until the last deletion a benchmark recorded is ``seconds`` old; return the seconds waited.
    Deletions by anything else (a test suite, a user) are not known here: run benchmarks after those too
    have settled."""
    try:
        deleted_at = float(MARK.read_text())
    except (OSError, ValueError):
        return 0.0
    wait = deleted_at + seconds - time.time()
    if wait <= 0:
        return 0.0
    print(f"waiting {wait:.0f} s for the file system to settle after the last benchmark's deletions "
          f"(bench/settle.py; --no-settle skips this)", flush=True)  # fmt: skip
    time.sleep(wait)
    return wait
