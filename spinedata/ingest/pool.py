"""The default executor: a pool of worker processes on this machine, one study per worker at a time.

A worker that dies (a decoder crashing the process, the kernel killing it for memory) breaks the pool;
the studies it may have held are ingested again each in a worker of its own, and a study whose worker
dies there too is a report line (``ProcessPool.ingest``). Workers end when this process dies
(``end_with_parent``), and all have exited when the pool is closed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from spinedata.dicom import DEFAULT_LIMITS, ReadLimits, contained, failure_reason
from spinedata.ingest.discover import StudyJob
from spinedata.ingest.executors import Headers, batch_lost, left_out, read_batch
from spinedata.ingest.worker import StudyResult, ingest_study

PR_SET_PDEATHSIG = 1
"""Linux ``prctl`` option: the signal this process gets when its parent dies."""
PARENT_CHECK_S = 1.0
"""Where ``prctl`` is not available, how often a worker's watchdog thread checks that its parent lives."""


def end_with_parent() -> str:
    """Make this (worker) process end when its parent dies, however the parent dies (``kill -9`` too): on
    Linux the kernel sends SIGKILL (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread checks
    ``os.getppid()`` every ``PARENT_CHECK_S`` and exits when the parent has changed. Returns which
    (``"prctl"`` or ``"watchdog"``)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the call: nobody would signal us
                    os._exit(1)
                return "prctl"
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="spine-parent-watchdog", daemon=True).start()
    return "watchdog"


def _context():
    """``fork`` on Linux (fast start; zarr resets its event loop after fork), the default elsewhere."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def new_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers end with this process."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=end_with_parent)


def _ingest_marked(store: str, job: StudyJob, limits: ReadLimits, marks: str) -> StudyResult:
    """``ingest_study`` in a worker, with the study's id in ``marks/<pid>`` while it runs: when a worker
    dies, the parent knows which studies were in progress."""
    mark = Path(marks) / str(os.getpid())
    mark.write_text(job.study_id)
    result = ingest_study(store, job, limits)
    mark.write_text("")
    return result


def _in_progress(marks: str) -> set[str]:
    """Study ids marked in progress (``_ingest_marked``); the marks are removed."""
    running = set()
    for mark in Path(marks).iterdir():
        with contextlib.suppress(OSError):
            running.add(mark.read_text())
            mark.unlink()
    return running - {""}


def _died(job: StudyJob, error: BaseException) -> StudyResult:
    """The report line of a study whose worker process died even when it ran alone."""
    return left_out(job, f"worker process died while ingesting this study alone ({job.n_files} files; {error}); "
                         "re-run to retry it")  # fmt: skip


class ProcessPool:
    """``workers`` processes on this machine (``fork`` on Linux). Use as a context manager: however it is
    left, every worker has exited (none may outlive the store's lock, and a caller counting its children's
    CPU, as ``spine demo``'s timings do, gets the workers' CPU with this call's)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = new_pool(workers)

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def share(self, store: Path, data_dir: Path) -> None:
        """Nothing to check: the workers are this machine's processes."""

    def read_headers(self, batches: list[list[str]], limits: ReadLimits) -> Iterator[Headers]:
        """Batches over the pool; should a worker die, the batches not read yet are read each in a worker of
        its own, and a batch whose worker dies again is a report line per file."""
        futures = [self.pool.submit(read_batch, batch, limits) for batch in batches]
        for files, future in zip(batches, futures, strict=True):
            try:
                yield future.result()
            except BrokenProcessPool:
                yield _read_batch_alone(files, limits)

    def ingest(self, store: str, jobs: list[StudyJob], limits: ReadLimits) -> Iterator[StudyResult]:
        """Every job submitted at once; results as they come. After a worker dies, the studies that were in
        progress are ingested again, each in a worker of its own, and the studies not started yet go on in a
        new pool. A worker that raises (anything but an interrupt) leaves its study out with a report line."""
        marks = tempfile.mkdtemp(prefix="spine-ingest-")
        replacements: list[ProcessPoolExecutor] = []
        suspects: list[StudyJob] = []
        queue, current = list(jobs), self.pool
        try:
            while queue:
                futures: dict[Future, StudyJob] = {}
                unfinished: list[StudyJob] = []
                for job in queue:
                    try:
                        futures[current.submit(_ingest_marked, store, job, limits, marks)] = job
                    except BrokenProcessPool:  # broken before this round (a worker died reading headers)
                        unfinished.append(job)
                for future in as_completed(futures):
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        unfinished.append(futures[future])
                    except BaseException as error:
                        if not contained(error):
                            raise
                        yield left_out(futures[future], f"study left out: {failure_reason(error)}")
                running = _in_progress(marks)
                known = {job.study_id for job in unfinished} & running
                if not known:  # nobody to blame: every unfinished study runs alone
                    known = {job.study_id for job in unfinished}
                suspects += [job for job in unfinished if job.study_id in known]
                queue = [job for job in unfinished if job.study_id not in known]
                if unfinished:
                    current = new_pool(self.workers)
                    replacements.append(current)
            for job in suspects:
                yield _alone(store, job, limits, marks)
        finally:
            for replacement in replacements:
                replacement.shutdown(wait=True, cancel_futures=True)
            shutil.rmtree(marks, ignore_errors=True)


def _read_batch_alone(paths: list[str], limits: ReadLimits = DEFAULT_LIMITS) -> Headers:
    """A batch of headers read in a worker of its own, after a worker died while the pool read headers."""
    pool = new_pool(1)
    try:
        return pool.submit(read_batch, paths, limits).result()
    except BrokenProcessPool:
        return batch_lost(paths, "worker process died while reading the headers of this file's batch")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _alone(store: str, job: StudyJob, limits: ReadLimits, marks: str) -> StudyResult:
    """One study in a worker process of its own; a report line when that worker dies too."""
    pool = new_pool(1)
    try:
        return pool.submit(_ingest_marked, store, job, limits, marks).result()
    except BrokenProcessPool as error:
        return _died(job, error)
    except BaseException as error:
        if not contained(error):
            raise
        return left_out(job, f"study left out: {failure_reason(error)}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
