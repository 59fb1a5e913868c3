"""``ingest``: an input folder -> a spinedata store, one study per task, resumable.

Order of work: discover studies (CSV rows, folders, or headers of a plain folder) -> take the store's
lock and remove what an interrupted run left -> ingest every study not yet complete on an executor (worker
processes on this machine by default, or a Dask cluster; each task writes its own study, only counts and
report lines come back; ``spinedata.ingest.executors``) -> resolve labels and targets against the store and
(re)write them -> write the report.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spinedata.dicom import DEFAULT_LIMITS, ReadLimits, SliceHeader
from spinedata.errors import OptionError, OutputPathError
from spinedata.ingest.discover import (
    LAYOUT_COMPETITION,
    Discovery,
    StudyJob,
    detect_layout,
    discover_competition,
    discover_plain,
)
from spinedata.ingest.executors import Executor, InProcess
from spinedata.ingest.paths import check_path_names, check_report_path, check_store_path
from spinedata.ingest.pool import ProcessPool
from spinedata.ingest.worker import SKIPPED_ATTR, StudyResult
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
from spinedata.store.layout import complete_study_ids, study_markers
from spinedata.store.reader import Dataset
from spinedata.store.tables import replace_table
from spinedata.store.urls import in_process_only
from spinedata.store.writer import IngestLock, clean_stale, create_or_open_store, remove_empty_staging

if TYPE_CHECKING:
    from distributed import Client

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is ``"scan"`` (plain folders: headers) or ``"ingest"``."""

HEADER_BATCH = 64
"""Files per task when reading the headers of a plain folder on the workers."""


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


def _cluster(scheduler: str | Client | None) -> contextlib.AbstractContextManager[Client | None]:
    """The ``distributed.Client`` of ``scheduler`` (None without one); ``ClusterError`` when the cluster cannot
    be reached or has no worker. Without a scheduler, dask is never imported."""
    if scheduler is None:
        return contextlib.nullcontext()
    from spinedata.ingest.cluster import session

    return session(scheduler)


def _executor(workers: int, client: Client | None) -> contextlib.AbstractContextManager[Executor]:
    """Where the work runs: the Dask cluster of ``client`` when given, this process for one worker, else a
    pool of ``workers`` processes. However it is left, no work of it goes on, so none outlives the store's
    lock (a Dask task already running is waited for, with a ``ClusterWarning`` when its end cannot be
    confirmed: ``DaskCluster.stop``)."""
    if client is not None:
        from spinedata.ingest.cluster import DaskCluster

        return DaskCluster(client)
    if workers == 1:
        return contextlib.nullcontext(InProcess())
    return ProcessPool(workers)


def _header_reader(executor: Executor, progress: Progress | None, limits: ReadLimits = DEFAULT_LIMITS):
    """A ``read_all`` for ``discover_plain``: header reads in batches of ``HEADER_BATCH`` files on the
    executor, with progress."""

    def read_all(paths: list[str]) -> Iterator[SliceHeader | Skipped]:
        batches = [paths[i : i + HEADER_BATCH] for i in range(0, len(paths), HEADER_BATCH)]
        done = 0
        if progress:
            progress("scan", 0, len(paths))
        for files, batch in zip(batches, executor.read_headers(batches, limits), strict=True):
            yield from batch
            done += len(files)  # files, not headers: a multi-frame file gives one header per frame
            if progress:
                progress("scan", done, len(paths))

    return read_all


def _run_jobs(store: Path, jobs: list[StudyJob], executor: Executor, progress: Progress | None,
              limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[StudyResult]:  # fmt: skip
    """Every job on the executor (largest first, so that no big study starts last); the returned iterator
    yields the results as they come, with progress."""
    ordered = sorted(jobs, key=lambda j: -j.n_files)
    if progress:
        progress("ingest", 0, len(ordered))
    return _with_progress(executor.ingest(str(store), ordered, limits), len(ordered), progress)


def _with_progress(results: Iterable[StudyResult], total: int, progress: Progress | None) -> Iterator[StudyResult]:
    for done, result in enumerate(results, start=1):
        if progress:
            progress("ingest", done, total)
        yield result


def _previous_report_lines(markers: dict[str, dict], study_ids: Iterable[str]) -> list[Skipped]:
    """Report lines kept in the markers (``zarr.json`` attributes) of studies written by an earlier run."""
    lines: list[Skipped] = []
    for study_id in sorted(study_ids):
        lines.extend(from_records(markers[study_id].get(SKIPPED_ATTR, [])))
    return lines


def _stack_lookup(store: Path, results: list[StudyResult], markers: dict[str, dict]):
    """Stacks of the studies written by this run (the geometry their workers sent back), else the
    store's (studies complete from an earlier run, whose ``markers`` this run read already)."""
    written = {r.study_id: r.stacks for r in results if r.written}
    from_store = None  # the store is opened only for a study this run did not write

    def lookup(study_id: str, series_id: str):
        nonlocal from_store
        if study_id not in written:
            if from_store is None:
                from_store = store_lookup(Dataset(store, markers=markers))
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
    store: Path, discovery: Discovery, tables: _Tables, results: list[StudyResult], markers: dict[str, dict]
) -> tuple[int, int, list[Skipped]]:
    """Resolve the labels and (re)write their table. Returns (labels, unresolved, report lines)."""
    skipped = list(tables.skipped)
    labels = empty_label_columns()
    if tables.labels is not None:
        lookup = _stack_lookup(store, results, markers)
        labels, unresolved = resolve_labels(tables.labels, lookup, discovery.label_csv)
        skipped.extend(unresolved)
    replace_table(store, L.LABELS, labels, L.POINT_DIM)
    return len(labels["stack"]), int((labels["stack"] < 0).sum()), skipped


def ingest(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "train",
    workers: int | None = None,
    scheduler: str | Client | None = None,
    report: str | os.PathLike | None = None,
    progress: Progress | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> IngestResult:
    """Ingest a competition-layout or plain DICOM folder into the store ``out`` (created or resumed).

    ``workers``: processes (default: all cores; 1 runs in this process). ``scheduler``: instead, run on a
    Dask cluster, given as its scheduler's address (``"tcp://HOST:PORT"``) or a ``distributed.Client``; its
    workers must see ``data_dir`` at the same path (a shared file system), and ``out`` too, or reach it
    at its URL with the credentials of their own environment (both checked before any work); the paths
    are made absolute (so are the report's). ``report``: CSV of every line left out or handled specially
    (default ``OUT/ingest_report.csv``; ``check_report_path`` refuses one that could overwrite data, before
    any work). ``limits``: what one DICOM file may declare before it is decoded (``dicom.ReadLimits``; a
    file beyond them is a report line). Studies already complete in the store are kept and not read again;
    labels and targets are always rewritten. Raises ``SpineError`` only for unusable arguments (missing
    folder, a store of another split, a concurrent ingest, an output that cannot be written, a cluster that
    cannot be used).
    """
    if scheduler is not None and workers is not None:
        raise OptionError("workers and scheduler (--workers, --scheduler) exclude each other: the cluster's "
                          "workers ingest")
    data_dir = Path(data_dir)
    check_path_names(data_dir, "input folder")
    store = check_store_path(out)  # a Path, or an ObjectPath for a store URL (spinedata.store.urls)
    report_path = check_report_path(data_dir, store, report)
    layout = detect_layout(data_dir, split)
    if scheduler is not None:
        data_dir = Path(os.path.abspath(data_dir))
        if isinstance(store, Path):  # a URL names the same store on every worker
            store = Path(os.path.abspath(store))
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if in_process_only(store):  # memory://: worker processes would write into their own memory
        if scheduler is not None:
            raise OptionError(f"a {str(store)!r} store lives in this process: it cannot be ingested on a cluster")
        workers = 1
    with _cluster(scheduler) as client:  # reached before anything is written
        try:
            create_or_open_store(store, split=split, source=str(data_dir.resolve()))
        except OSError as error:
            raise OutputPathError(f"cannot create or open the store {str(store)!r}: {error.strerror or error}") from error
        with IngestLock(store):
            result = _ingest_locked(data_dir, store, layout, split, _executor(workers, client), progress, limits)
    write_report(report_path, result.skipped)
    result.report = report_path
    return result


def _ingest_locked(data_dir: Path, store: Path, layout: str, split: str,
                   opened: contextlib.AbstractContextManager[Executor], progress: Progress | None,
                   limits: ReadLimits) -> IngestResult:  # fmt: skip
    """What ``ingest`` does while it holds the store's lock: clean up, ingest the studies on the executor
    ``opened`` (closed once every result is in, so no work outlives the lock), then labels and targets. Each
    study's marker is read once (nothing else writes the store meanwhile: a store at a URL pays per request)."""
    markers = study_markers(store)
    removed = clean_stale(store, markers)
    with opened as executor:
        executor.share(store, data_dir)
        if layout == LAYOUT_COMPETITION:
            discovery = discover_competition(data_dir, split)
        else:
            discovery = discover_plain(data_dir, _header_reader(executor, progress, limits))
        already = complete_study_ids(store, markers)
        jobs = [job for job in discovery.jobs if job.study_id not in already]
        job_ids = {job.study_id for job in discovery.jobs}
        running = _run_jobs(store, jobs, executor, progress, limits)
        try:
            tables = _read_labels_write_targets(store, discovery, job_ids)  # while the workers ingest
        finally:  # an unreadable CSV still lets every study finish first
            results = list(running)
    skipped = list(discovery.skipped)
    skipped.extend(_previous_report_lines(markers, already & job_ids))
    for result in sorted(results, key=lambda r: r.study_id):
        skipped.extend(result.skipped)
    n_labels, n_unresolved, table_lines = _write_labels(store, discovery, tables, results, markers)
    skipped.extend(table_lines)
    remove_empty_staging(store)
    return IngestResult(
        store=store,
        layout=layout,
        n_studies=len(discovery.jobs),
        n_written=sum(r.written for r in results),
        n_already=len(already & job_ids),
        n_complete=len(already | {r.study_id for r in results if r.written}),
        n_labels=n_labels,
        n_labels_unresolved=n_unresolved,
        skipped=skipped,
        removed_stale=removed,
    )

