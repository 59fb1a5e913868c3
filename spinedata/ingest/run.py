"""``ingest``: an input folder -> a spinedata store, one study per worker process, resumable.

Order of work: discover studies (CSV rows, folders, or headers of a plain folder) -> take the store's
lock and remove what an interrupted run left -> ingest every study not yet complete in worker processes
(each writes its own study; only counts and report lines come back) -> resolve labels and targets
against the store and (re)write them -> write the report.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from spinedata.dicom import DEFAULT_LIMITS, ReadLimits, SliceHeader, contained, failure_reason
from spinedata.errors import OutputPathError
from spinedata.ingest.discover import (
    LAYOUT_COMPETITION,
    Discovery,
    StudyJob,
    detect_layout,
    discover_competition,
    discover_plain,
    read_all_headers,
)
from spinedata.ingest.paths import check_path_names, check_report_path, check_store_path
from spinedata.ingest.worker import SKIPPED_ATTR, StudyResult, ingest_study
from spinedata.labels import (
    empty_label_columns,
    empty_target_columns,
    read_label_coordinates,
    read_targets,
    resolve_labels,
    store_lookup,
)
from spinedata.report import Skipped, from_records, write_report
from spinedata.store import layout as L
from spinedata.store.layout import complete_study_ids
from spinedata.store.reader import open_dataset
from spinedata.store.tables import replace_table
from spinedata.store.urls import in_process_only
from spinedata.store.writer import IngestLock, clean_stale, create_or_open_store, remove_empty_staging

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is ``"scan"`` (plain folders: headers) or ``"ingest"``."""

HEADER_BATCH = 64
"""Files per task when reading the headers of a plain folder in worker processes."""


@dataclass
class IngestResult:
    """Summary of one ``ingest`` run."""

    store: Path
    layout: str
    n_studies: int
    """Studies found in the input."""
    n_written: int
    """Studies written by this run."""
    n_already: int
    """Studies that were already complete (a resumed run)."""
    n_complete: int
    """Complete studies in the store after the run."""
    n_labels: int = 0
    n_labels_unresolved: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    report: Path | None = None
    removed_stale: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return self.n_studies - self.n_written - self.n_already


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


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


@contextlib.contextmanager
def _worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """The worker processes (None for one worker: everything runs in this process). However it is left,
    every worker is waited for until it has exited: none may outlive the store's lock, and a caller that
    counts its children's CPU (``RUSAGE_CHILDREN``, as ``spine demo``'s timings do) gets the workers' CPU
    with this call's, not with a later one's."""
    if workers == 1:
        yield None
        return
    pool = _new_pool(workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_batch(paths: list[str], limits: ReadLimits = DEFAULT_LIMITS) -> list[SliceHeader | Skipped]:
    return list(read_all_headers(paths, limits))


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=end_with_parent)


def _read_batch_alone(paths: list[str], limits: ReadLimits) -> list[SliceHeader | Skipped]:
    """A batch of headers read in a worker of its own, after a worker died while the pool read headers:
    if this one dies too, every file of the batch is a report line."""
    pool = _new_pool(1)
    try:
        return pool.submit(_read_batch, paths, limits).result()
    except BrokenProcessPool:
        return [Skipped(path, "worker process died while reading the headers of this file's batch")
                for path in paths]  # fmt: skip
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _scan_in_pool(pool: ProcessPoolExecutor | None, progress: Progress | None, limits: ReadLimits = DEFAULT_LIMITS):
    """A ``read_all`` for ``discover_plain``: header reads in batches over the pool, with progress. Should a
    worker die, the batches not read yet are read each in a worker of its own."""
    read = functools.partial(_read_batch, limits=limits)

    def results_of(batches: list[list[str]]) -> Iterator[list[SliceHeader | Skipped]]:
        if pool is None:
            yield from map(read, batches)
            return
        futures = [pool.submit(read, batch) for batch in batches]
        for files, future in zip(batches, futures, strict=True):
            try:
                yield future.result()
            except BrokenProcessPool:
                yield _read_batch_alone(files, limits)

    def read_all(paths: list[str]) -> Iterator[SliceHeader | Skipped]:
        batches = [paths[i : i + HEADER_BATCH] for i in range(0, len(paths), HEADER_BATCH)]
        done = 0
        if progress:
            progress("scan", 0, len(paths))
        for files, batch in zip(batches, results_of(batches), strict=True):
            yield from batch
            done += len(files)  # files, not headers: a multi-frame file gives one header per frame
            if progress:
                progress("scan", done, len(paths))

    return read_all


def _run_jobs(
    store: Path, jobs: list[StudyJob], pool: ProcessPoolExecutor | None, progress: Progress | None,
    workers: int = 1, limits: ReadLimits = DEFAULT_LIMITS,
) -> Iterator[StudyResult]:  # fmt: skip
    """Submit every job to the pool at once (largest first, so that no big study starts last); the returned
    iterator yields the results as they come (``_run_in_pools``: a dead worker costs only its study).
    Without a pool, each job runs in this process as the iterator reaches it."""
    ordered = sorted(jobs, key=lambda j: -j.n_files)
    if progress:
        progress("ingest", 0, len(ordered))
    if pool is None:
        results: Iterable[StudyResult] = (ingest_study(str(store), job, limits) for job in ordered)
    else:
        results = _run_in_pools(str(store), ordered, pool, workers, limits)
    return _with_progress(results, len(ordered), progress)


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


def _run_in_pools(store: str, jobs: list[StudyJob], pool: ProcessPoolExecutor, workers: int,
                  limits: ReadLimits) -> Iterator[StudyResult]:  # fmt: skip
    """Results of ``jobs`` as they come. A worker that dies (a decoder crashing the process, the kernel
    killing it for memory) breaks the pool: the studies that were in progress are then ingested again, each
    in a worker of its own, and the one whose worker dies again is a report line; the studies not started
    yet go on in a new pool. A worker that raises (anything but an interrupt) leaves its study out with a
    report line. So the run, its labels table and its report always complete."""
    marks = tempfile.mkdtemp(prefix="spine-ingest-")
    replacements: list[ProcessPoolExecutor] = []
    suspects: list[StudyJob] = []
    queue, current = list(jobs), pool
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
                    yield _left_out(futures[future], f"study left out: {failure_reason(error)}")
            running = _in_progress(marks)
            known = {job.study_id for job in unfinished} & running
            if not known:  # nobody to blame: every unfinished study runs alone
                known = {job.study_id for job in unfinished}
            suspects += [job for job in unfinished if job.study_id in known]
            queue = [job for job in unfinished if job.study_id not in known]
            if unfinished:
                current = _new_pool(workers)
                replacements.append(current)
        for job in suspects:
            yield _alone(store, job, limits, marks)
    finally:
        for replacement in replacements:
            replacement.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(marks, ignore_errors=True)


def _alone(store: str, job: StudyJob, limits: ReadLimits, marks: str) -> StudyResult:
    """One study in a worker process of its own; a report line when that worker dies too."""
    pool = _new_pool(1)
    try:
        return pool.submit(_ingest_marked, store, job, limits, marks).result()
    except BrokenProcessPool as error:
        return _died(job, error)
    except BaseException as error:
        if not contained(error):
            raise
        return _left_out(job, f"study left out: {failure_reason(error)}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _left_out(job: StudyJob, reason: str) -> StudyResult:
    result = StudyResult(job.study_id)
    result.skipped.append(Skipped("", reason, job.study_id))
    return result


def _with_progress(results: Iterable[StudyResult], total: int, progress: Progress | None) -> Iterator[StudyResult]:
    for done, result in enumerate(results, start=1):
        if progress:
            progress("ingest", done, total)
        yield result


def _died(job: StudyJob, error: BaseException) -> StudyResult:
    """The report line of a study whose worker process died (killed for memory, a crash in a decoder) even
    when it ran alone."""
    return _left_out(
        job, f"worker process died while ingesting this study alone ({job.n_files} files; {error}); "
             "re-run to retry it",
    )  # fmt: skip


def _previous_report_lines(store: Path, study_ids: Iterable[str]) -> list[Skipped]:
    """Report lines kept in the attributes of studies written by an earlier run."""
    lines: list[Skipped] = []
    for study_id in sorted(study_ids):
        attrs = json.loads((store / L.STUDIES / study_id / "zarr.json").read_text()).get("attributes", {})
        lines.extend(from_records(attrs.get(SKIPPED_ATTR, [])))
    return lines


def _stack_lookup(store: Path, results: list[StudyResult]):
    """Stacks of the studies written by this run (the geometry their workers sent back), else the
    store's (studies complete from an earlier run)."""
    written = {r.study_id: r.stacks for r in results if r.written}
    from_store = None  # the store is opened only for a study this run did not write

    def lookup(study_id: str, series_id: str):
        nonlocal from_store
        if study_id not in written:
            if from_store is None:
                from_store = store_lookup(open_dataset(store))
            return from_store(study_id, series_id)
        stacks = written[study_id].get(series_id)
        return "series not in the store" if stacks is None else list(enumerate(stacks))

    return lookup


@dataclass
class _Tables:
    """The label CSV as read (resolved against the stacks at the end) and the report lines of both CSVs."""

    labels: dict | None = None
    skipped: list[Skipped] = field(default_factory=list)


def _read_labels_write_targets(store: Path, discovery: Discovery, job_ids: set[str]) -> _Tables:
    """Read the label coordinates, and read and (re)write the targets, which need no study (the parent does
    this while the workers ingest). Both CSVs are read before anything is written."""
    tables = _Tables()
    if discovery.label_csv is not None:
        tables.labels, bad = read_label_coordinates(discovery.label_csv)
        tables.skipped.extend(bad)
    targets = empty_target_columns()
    if discovery.targets_csv is not None:
        targets, bad = read_targets(discovery.targets_csv)
        tables.skipped.extend(bad)
        without_images = sorted(set(targets["study_id"]) - job_ids)
        tables.skipped.extend(
            Skipped(str(discovery.targets_csv), "targets of a study without images", study_id=s)
            for s in without_images
        )
    replace_table(store, L.TARGETS, targets, L.STUDY_DIM)
    return tables


def _write_labels(
    store: Path, discovery: Discovery, tables: _Tables, results: list[StudyResult]
) -> tuple[int, int, list[Skipped]]:
    """Resolve the labels and (re)write their table. Returns (labels, unresolved, report lines)."""
    skipped = list(tables.skipped)
    labels = empty_label_columns()
    if tables.labels is not None:
        labels, unresolved = resolve_labels(tables.labels, _stack_lookup(store, results), discovery.label_csv)
        skipped.extend(unresolved)
    replace_table(store, L.LABELS, labels, L.POINT_DIM)
    return len(labels["stack"]), int((labels["stack"] < 0).sum()), skipped


def ingest(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "train",
    workers: int | None = None,
    report: str | os.PathLike | None = None,
    progress: Progress | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> IngestResult:
    """Ingest a competition-layout or plain DICOM folder into the store ``out`` (created or resumed).

    ``workers``: processes (default: all cores; 1 runs in this process). ``report``: CSV of every line
    left out or handled specially (default ``OUT/ingest_report.csv``; ``check_report_path`` refuses one that
    could overwrite data, before any work). ``limits``: what one DICOM file may declare before it is decoded
    (``dicom.ReadLimits``; a file beyond them is a report line). Studies already complete in the
    store are kept and not read again; labels and targets are always rewritten. Raises ``SpineError``
    only for unusable arguments (missing folder, a store of another split, a concurrent ingest, an output
    that cannot be written).
    """
    data_dir = Path(data_dir)
    check_path_names(data_dir, "input folder")
    store = check_store_path(out)  # a Path, or an ObjectPath for a store URL (spinedata.store.urls)
    report_path = check_report_path(data_dir, store, report)
    layout = detect_layout(data_dir, split)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if in_process_only(store):  # memory://: worker processes would write into their own memory
        workers = 1
    try:
        create_or_open_store(store, split=split, source=str(data_dir.resolve()))
    except OSError as error:
        raise OutputPathError(f"cannot create or open the store {str(store)!r}: {error.strerror or error}") from error
    with IngestLock(store):
        removed = clean_stale(store)
        with _worker_pool(workers) as pool:
            if layout == LAYOUT_COMPETITION:
                discovery = discover_competition(data_dir, split)
            else:
                discovery = discover_plain(data_dir, _scan_in_pool(pool, progress, limits))
            already = complete_study_ids(store)
            jobs = [job for job in discovery.jobs if job.study_id not in already]
            job_ids = {job.study_id for job in discovery.jobs}
            skipped = list(discovery.skipped)
            running = _run_jobs(store, jobs, pool, progress, workers, limits)
            try:
                tables = _read_labels_write_targets(store, discovery, job_ids)  # while the workers ingest
            finally:  # an unreadable CSV still lets every study finish first
                results = list(running)
        skipped.extend(_previous_report_lines(store, already & job_ids))
        for result in sorted(results, key=lambda r: r.study_id):
            skipped.extend(result.skipped)
        n_labels, n_unresolved, table_lines = _write_labels(store, discovery, tables, results)
        skipped.extend(table_lines)
        remove_empty_staging(store)
    write_report(report_path, skipped)
    return IngestResult(
        store=store,
        layout=layout,
        n_studies=len(discovery.jobs),
        n_written=sum(r.written for r in results),
        n_already=len(already & job_ids),
        n_complete=len(complete_study_ids(store)),
        n_labels=n_labels,
        n_labels_unresolved=n_unresolved,
        skipped=skipped,
        report=report_path,
        removed_stale=removed,
    )

