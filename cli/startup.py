"""How the ``spine`` process is set up before its command runs. The command line owns its process; the
libraries never change process-wide settings."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Sequence

WITHOUT_TORCH: frozenset[str] = frozenset({"version", "score", "ingest", "info", "verify", "synth", "show"})
"""Commands that never import torch (``tests/cli/test_startup.py`` checks their modules)."""

BLAS_THREADS = "OPENBLAS_NUM_THREADS"
"""OpenBLAS (NumPy's BLAS in its wheels) reads its thread count from this variable when it is loaded."""


def prepare_process(names: Sequence[str]) -> None:
    """Settings for a process that runs the commands ``names`` (before any of them imports NumPy).

    Commands that never import torch run NumPy's BLAS on one thread unless the user set
    ``OPENBLAS_NUM_THREADS``: their linear algebra is on 4x4 matrices, their parallelism is worker
    processes, and the thread per core that OpenBLAS starts at import spins for a while on the cores those
    workers need (``docs/benchmarks.md``). torch is left alone:
    on some platforms its matrix products run on OpenBLAS too."""
    if names and all(name in WITHOUT_TORCH for name in names):
        os.environ.setdefault(BLAS_THREADS, "1")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body (a command's imports) with the garbage collector off, as it was before afterwards.

    Importing NumPy and the libraries creates many long-lived objects and no garbage; the collections they
    trigger walk all of them for nothing (``docs/benchmarks.md``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
