"""Process tuning for ``spine ingest`` (speed only; ingest works the same without any of it).

Each trick can be switched off for an A/B run: ``SPINE_TUNING_OFF=name,name`` (``TRICKS``);
``bench/bench_tricks.py`` measures each, docs/benchmarks.md has the figures and keeps the verdicts.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator

TRICKS = ("malloc", "gc_freeze", "blosc")
"""``malloc``: workers keep freed memory (glibc ``mallopt``) instead of faulting fresh pages in for each
stack; ``gc_freeze``: the parent's objects frozen while workers are forked (no worker's collector walks
them); ``blosc``: workers compress on one Blosc thread each, and the parent's Blosc pool is stopped while
it forks (a child must not inherit a pool without its threads)."""


def _on(trick: str) -> bool:
    return trick not in os.environ.get("SPINE_TUNING_OFF", "").split(",")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc ``mallopt`` parameters (``malloc.h``)."""
WORKER_MMAP_THRESHOLD = 32 << 20
"""Allocations below this come from the heap (glibc's largest allowed value); larger ones are mapped."""
WORKER_TRIM_THRESHOLD = 1 << 30
"""Free memory a worker keeps at the top of its heap before giving it back to the system."""


def tune_worker() -> None:
    """Settings of a freshly started worker process."""
    if _on("blosc"):
        import blosc

        blosc.set_nthreads(1)
    if _on("malloc"):
        keep_freed_memory()


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in this process instead of unmapping or trimming it at once, so that
    the next stack's arrays reuse pages already faulted in. Returns False where this is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's mallopt does nothing)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD)
    )


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Around the forking of worker processes."""
    with contextlib.ExitStack() as stack:
        if _on("gc_freeze"):
            stack.enter_context(_frozen())
        if _on("blosc"):
            stack.enter_context(_blosc_threads_stopped())
        yield


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """Every object so far in the permanent generation (unless the caller froze objects itself)."""
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()


@contextlib.contextmanager
def _blosc_threads_stopped() -> Iterator[None]:
    """Blosc on one thread in this process while it forks, restored after."""
    import blosc

    previous = blosc.set_nthreads(1)
    try:
        yield
    finally:
        blosc.set_nthreads(previous)
