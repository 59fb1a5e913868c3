"""Where ingest's work runs, behind one interface: this process (``InProcess``), worker processes on this
machine (``spinedata.ingest.pool``) or a Dask cluster (``spinedata.ingest.cluster``).

``run.ingest`` decides what to do, in which order, and shows progress; an executor runs the two kinds of
work (reading the headers of a batch of files, ingesting one study) and turns whatever happens to a worker
into report lines, so that a run, its labels table and its report always complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from spinedata.dicom import DEFAULT_LIMITS, ReadLimits, SliceHeader
from spinedata.ingest.discover import StudyJob, read_all_headers
from spinedata.ingest.worker import StudyResult, ingest_study
from spinedata.report import Skipped
from spinedata.store.objectpath import Location

Headers = list[SliceHeader | Skipped]
"""The headers of one batch of files (a file that cannot be read is a report line)."""


class Executor(Protocol):
    """Runs ingest's work somewhere; every method returns report lines rather than raise for a worker that
    fails or dies (only an interrupt, or an unusable executor, raises)."""

    def share(self, store: Location, data_dir: Path) -> None:
        """Called once the store exists, before any work: an executor whose workers live elsewhere checks
        that they see the input folder and the store (``SpineError`` when not)."""

    def read_headers(self, batches: list[list[str]], limits: ReadLimits) -> Iterator[Headers]:
        """The headers of each batch of files, in the order of ``batches``."""

    def ingest(self, store: str, jobs: list[StudyJob], limits: ReadLimits) -> Iterator[StudyResult]:
        """``ingest_study`` of every job, each result as it comes (jobs are given largest first)."""


def read_batch(paths: list[str], limits: ReadLimits = DEFAULT_LIMITS) -> Headers:
    """The headers of one batch of files (the unit of work of a header scan)."""
    return list(read_all_headers(paths, limits))


class InProcess:
    """Everything in this process, one thing at a time (``workers=1``): exceptions and decoder panics are
    contained by ``ingest_study``, a segfault is not."""

    def share(self, store: Location, data_dir: Path) -> None:
        """Nothing to check: this process sees what it was given."""

    def read_headers(self, batches: list[list[str]], limits: ReadLimits) -> Iterator[Headers]:
        return (read_batch(batch, limits) for batch in batches)

    def ingest(self, store: str, jobs: list[StudyJob], limits: ReadLimits) -> Iterator[StudyResult]:
        return (ingest_study(store, job, limits) for job in jobs)


def left_out(job: StudyJob, reason: str) -> StudyResult:
    """The result of a study that was not written, with its one report line."""
    result = StudyResult(job.study_id)
    result.skipped.append(Skipped("", reason, job.study_id))
    return result


def batch_lost(paths: list[str], reason: str) -> Headers:
    """The report lines of a batch of files whose headers were not read (its worker died): one per file."""
    return [Skipped(path, reason) for path in paths]
