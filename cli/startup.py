"""How the ``spine`` process is set up before its command runs. The command line owns its process; the
libraries never change process-wide settings."""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence

WITHOUT_TORCH: frozenset[str] = frozenset({"version", "score", "ingest", "info", "verify", "synth", "show", "ngff"})
"""Commands that never import torch (``tests/cli/test_startup.py`` checks their modules)."""

BLAS_THREADS = "OPENBLAS_NUM_THREADS"
"""OpenBLAS (NumPy's BLAS in its wheels) reads its thread count from this variable when it is loaded."""


def _on(trick: str) -> bool:
    """Whether a start-up trick is on (``SPINE_TUNING_OFF=blas,exit_freeze`` for A/B runs)."""
    return trick not in os.environ.get("SPINE_TUNING_OFF", "").split(",")


def prepare_process(names: Sequence[str]) -> None:
    """Settings for a process that runs the commands ``names`` (before any of them imports NumPy).

    Commands that never import torch run NumPy's BLAS on one thread unless the user set
    ``OPENBLAS_NUM_THREADS``: their linear algebra is on 4x4 matrices, their parallelism is worker
    processes, and the thread per core that OpenBLAS starts at import spins for a while on the cores those
    workers need (``docs/benchmarks.md``). torch is left alone:
    on some platforms its matrix products run on OpenBLAS too."""
    if _on("blas") and names and all(name in WITHOUT_TORCH for name in names):
        os.environ.setdefault(BLAS_THREADS, "1")


def process_ending() -> None:
    """What the process does when its command is done: freeze the objects still alive, so that the
    interpreter's last garbage collections do not walk every imported module's objects."""
    if _on("exit_freeze"):
        gc.freeze()
