"""Finding the studies of an input folder: the competition layout, or a plain folder of DICOM files.

Competition layout (``reference/competition.md``)::

    DATA_DIR/<split>_series_descriptions.csv     study_id, series_id, series_description
    DATA_DIR/<split>_images/<study_id>/<series_id>/*.dcm

A plain folder (no ``<split>_images/``) is any tree of DICOM files: its files' headers are read (in
worker processes) and grouped by StudyInstanceUID and SeriesInstanceUID, which become the ids.
Everything that cannot become part of a study is a report line, never a silent drop.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spinedata.dicom import DEFAULT_LIMITS, ReadLimits, SliceHeader, read_headers
from spinedata.errors import DataLayoutError, DicomReadError
from spinedata.ids import id_problem
from spinedata.labels import read_series_descriptions
from spinedata.report import Skipped

SPLITS = ("train", "test")
LAYOUT_COMPETITION = "competition"
LAYOUT_PLAIN = "plain"


@dataclass(frozen=True)
class SeriesJob:
    """One series to ingest: its id, the description (None: take the DICOM SeriesDescription), its files,
    and their headers when they were already read (plain folders)."""

    series_id: str
    description: str | None
    files: tuple[str, ...]
    headers: tuple[SliceHeader, ...] = ()


@dataclass(frozen=True)
class StudyJob:
    """One study to ingest (the unit of work of one worker process)."""

    study_id: str
    series: tuple[SeriesJob, ...]

    @property
    def n_files(self) -> int:
        return sum(len(s.files) for s in self.series)


@dataclass
class Discovery:
    """What an input folder holds: jobs, report lines, and where the CSVs are."""

    layout: str
    jobs: list[StudyJob]
    skipped: list[Skipped] = field(default_factory=list)
    label_csv: Path | None = None
    targets_csv: Path | None = None


def _files_under(folder: Path) -> list[str]:
    """Every regular file below ``folder`` (paths as strings), in a deterministic order."""
    found = []
    for directory, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(directory, name) for name in sorted(files))
    return found


def discover_competition(data_dir: Path, split: str) -> Discovery:
    """Jobs from ``<split>_images/<study>/<series>/`` and ``<split>_series_descriptions.csv``."""
    images = data_dir / f"{split}_images"
    csv_path = data_dir / f"{split}_series_descriptions.csv"
    skipped: list[Skipped] = []
    descriptions: dict[tuple[str, str], str] = {}
    if csv_path.is_file():
        rows, bad_rows = read_series_descriptions(csv_path)
        skipped.extend(bad_rows)
        for study_id, series_id, description in rows:
            descriptions[(study_id, series_id)] = description
    else:
        skipped.append(
            Skipped(path=str(csv_path), reason="no series descriptions CSV: roles taken from DICOM SeriesDescription")
        )
    on_disk: dict[str, dict[str, list[str]]] = {}
    for study_dir in sorted(images.iterdir()):
        if not study_dir.is_dir():
            skipped.append(Skipped(path=str(study_dir), reason="not inside a <study_id>/<series_id>/ folder"))
            continue
        reason = id_problem("study id", study_dir.name)
        if reason:
            skipped.append(Skipped(path=str(study_dir), reason=reason, study_id=study_dir.name))
            continue
        series_files: dict[str, list[str]] = {}
        for series_dir in sorted(study_dir.iterdir()):
            if not series_dir.is_dir():
                skipped.append(
                    Skipped(path=str(series_dir), reason="not inside a <series_id>/ folder", study_id=study_dir.name)
                )
                continue
            reason = id_problem("series id", series_dir.name)
            files = _files_under(series_dir)
            if reason:
                skipped.append(Skipped(str(series_dir), reason, study_dir.name, series_dir.name))
            elif not files:
                skipped.append(Skipped(str(series_dir), "series folder without files", study_dir.name, series_dir.name))
            else:
                series_files[series_dir.name] = files
        if series_files:
            on_disk[study_dir.name] = series_files
        else:
            skipped.append(Skipped(path=str(study_dir), reason="study folder without series", study_id=study_dir.name))
    if descriptions:
        for study_id, series_id in sorted(descriptions):
            if series_id not in on_disk.get(study_id, {}):
                reason = f"CSV row without files ({csv_path.name}: {descriptions[(study_id, series_id)]!r})"
                skipped.append(Skipped(str(images / study_id / series_id), reason, study_id, series_id))
    jobs = []
    for study_id, series_files in on_disk.items():
        series = []
        for series_id, files in series_files.items():
            description = descriptions.get((study_id, series_id))
            if description is None and descriptions:
                reason = f"folder without a row in {csv_path.name}: role taken from DICOM SeriesDescription"
                skipped.append(Skipped(str(images / study_id / series_id), reason, study_id, series_id))
            series.append(SeriesJob(series_id, description, tuple(files)))
        jobs.append(StudyJob(study_id, tuple(series)))
    label_csv = data_dir / f"{split}_label_coordinates.csv"
    targets_csv = data_dir / f"{split}.csv"
    return Discovery(
        layout=LAYOUT_COMPETITION,
        jobs=jobs,
        skipped=skipped,
        label_csv=label_csv if label_csv.is_file() else None,
        targets_csv=targets_csv if targets_csv.is_file() else None,
    )


def read_headers_or_reason(path: str, limits: ReadLimits = DEFAULT_LIMITS) -> list[SliceHeader | Skipped]:
    """A file's headers (one per frame of a multi-frame file), or the report line saying why it has none
    (picklable, for worker processes; ``read_headers`` turns any failure but an interrupt into
    ``DicomReadError``)."""
    try:
        return list(read_headers(path, limits))
    except DicomReadError as error:
        return [Skipped(path=path, reason=str(error))]


def read_all_headers(paths: Iterable[str], limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[SliceHeader | Skipped]:
    """``read_headers_or_reason`` over ``paths``, in this process, one item per header or report line."""
    for path in paths:
        yield from read_headers_or_reason(path, limits)


def group_headers(results: Iterable[SliceHeader | Skipped]) -> tuple[list[StudyJob], list[Skipped]]:
    """Group read headers by StudyInstanceUID / SeriesInstanceUID into jobs; report lines for the rest."""
    skipped: list[Skipped] = []
    studies: dict[str, dict[str, list[SliceHeader]]] = defaultdict(lambda: defaultdict(list))
    for item in results:
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        reason = id_problem("StudyInstanceUID", item.study_uid) or id_problem("SeriesInstanceUID", item.series_uid)
        if reason:
            skipped.append(Skipped(item.path, reason, item.study_uid, item.series_uid))
            continue
        studies[item.study_uid][item.series_uid].append(item)
    jobs = []
    for study_id in sorted(studies):
        series = tuple(
            SeriesJob(
                series_id,
                None,
                tuple(h.path for h in headers),
                tuple(headers),
            )
            for series_id, headers in sorted(studies[study_id].items())
        )
        jobs.append(StudyJob(study_id, series))
    return jobs, skipped


def discover_plain(
    data_dir: Path, read_all: Callable[[list[str]], Iterable[SliceHeader | Skipped]] | None = None
) -> Discovery:
    """Jobs from a plain folder of DICOM files; ``read_all`` maps ``read_headers_or_reason`` over paths
    (in worker processes; ``read_all_headers`` when None)."""
    paths = _files_under(data_dir)
    reader = read_all or read_all_headers
    jobs, skipped = group_headers(reader(paths))
    return Discovery(layout=LAYOUT_PLAIN, jobs=jobs, skipped=skipped)


def detect_layout(data_dir: Path, split: str) -> str:
    """``competition`` when ``<split>_images/`` exists, else ``plain``; ``DataLayoutError`` for a missing
    folder or an unknown split."""
    if split not in SPLITS:
        raise DataLayoutError(f"split must be one of {SPLITS}, got {split!r}")
    if not data_dir.is_dir():
        raise DataLayoutError(f"input folder {str(data_dir)!r} does not exist or is not a folder")
    if not _holds_a_file(data_dir):
        raise DataLayoutError(f"input folder {str(data_dir)!r} holds no files; nothing to ingest")
    if (data_dir / f"{split}_images").is_dir():
        return LAYOUT_COMPETITION
    others = [f"{other}_images" for other in SPLITS if other != split and (data_dir / f"{other}_images").is_dir()]
    if others:
        raise DataLayoutError(
            f"{str(data_dir)!r} has {others[0]}/ but no {split}_images/; pass the matching --split"
        )
    return LAYOUT_PLAIN


def _holds_a_file(folder: Path) -> bool:
    """Whether anything but folders lies anywhere below ``folder`` (stops at the first such entry)."""
    for _, _, files in os.walk(folder):
        if files:
            return True
    return False
