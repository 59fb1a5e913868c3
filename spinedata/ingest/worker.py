"""Ingesting one study (runs in a worker process): headers -> stacks -> pixels -> staged study -> commit.

Memory is bounded by one series of decoded pixels (and every file's declared size by ``ReadLimits``, checked
before it is decoded). Every file, series or study left out becomes a report line; nothing is sent back to
the parent but counts and those lines. A failure while reading one file, whatever it is (a decoder's panic,
MemoryError, a corrupt deflate stream; not an interrupt), leaves out that file only (``spinedata.dicom.contained``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

import numpy as np

from spinedata.dicom import (
    DEFAULT_LIMITS,
    ReadLimits,
    SliceHeader,
    contained,
    is_whole,
    read_headers,
    read_pixels,
    read_stack,
    read_stack_stored,
    shared_rescale,
)
from spinedata.errors import DicomReadError, SpineError
from spinedata.geometry import StackGeometry
from spinedata.ingest.discover import SeriesJob, StudyJob
from spinedata.report import Skipped, to_records
from spinedata.roles import role_from_description
from spinedata.stacks import build_stacks
from spinedata.store.writer import StudyWriter

SKIPPED_ATTR = "skipped"
"""Study attribute keeping the study's report lines, so that a re-run's report still lists them."""


@dataclass
class StudyResult:
    """What a worker reports back about one study."""

    study_id: str
    written: bool = False
    n_series: int = 0
    n_stacks: int = 0
    n_slices: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    stacks: dict[str, list[StackGeometry]] = field(default_factory=dict)
    """The geometry of each written stack, per series id, in stack order (labels are resolved with it)."""


def _headers(series: SeriesJob, study_id: str, skipped: list[Skipped], limits: ReadLimits) -> list[SliceHeader]:
    """Headers of a series' files (already read for plain folders; one per frame of a multi-frame file);
    unreadable files become report lines."""
    if series.headers:
        return list(series.headers)
    headers = []
    for path in series.files:
        try:
            headers.extend(read_headers(path, limits))
        except DicomReadError as error:
            skipped.append(Skipped(path, str(error), study_id, series.series_id))
    return headers


def read_stack_for_store(members: list[SliceHeader]) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A stack's pixels as the store keeps them: ``(image, None)`` with the values ``read_stack`` gives, or,
    when the slices share one non-integer RescaleSlope/Intercept (values that would be float32),
    ``(stored integers, (slope, intercept))`` with ``stored * slope + intercept`` those values."""
    shared = shared_rescale(members)
    if shared is not None and not is_whole(*shared):
        stored, slope, intercept = read_stack_stored(members)
        if stored.dtype.kind in "iu":
            return stored, (slope, intercept)
        return stored, None
    return read_stack(members), None


def _decoded_stacks(
    headers: list[SliceHeader], study_id: str, series_id: str, skipped: list[Skipped]
) -> list[tuple[StackGeometry, np.ndarray, tuple[float, float] | None]]:
    """Stacks of one series with their pixels and shared rescale. A file whose pixels cannot be decoded
    is reported and the stacks are rebuilt without it (so geometry never includes a slice that has no
    image)."""
    bad: set[str] = set()
    while True:
        usable = [h for h in headers if h.path not in bad]
        stacks, left_out = build_stacks(usable)
        decoded = []
        failed = None
        for geometry, members in stacks:
            try:
                decoded.append((geometry, *read_stack_for_store(members)))
            except DicomReadError as error:
                failed = (members, error)
                break
        if failed is None:
            skipped.extend(Skipped(s.path, s.reason, study_id, series_id) for s in left_out)
            return decoded
        members, error = failed
        newly_bad = 0
        for header in members:
            if header.path in bad:  # another frame of a multi-frame file already failed
                continue
            try:
                read_pixels(header)
            except DicomReadError as file_error:
                skipped.append(Skipped(header.path, str(file_error), study_id, series_id))
                bad.add(header.path)
                newly_bad += 1
        if newly_bad == 0:  # every file decodes alone but not together: leave the whole stack out
            for header in members:
                skipped.append(Skipped(header.path, f"stack left out: {error}", study_id, series_id))
                bad.add(header.path)


def _write_series(writer: StudyWriter, series: SeriesJob, study_id: str, result: StudyResult,
                  limits: ReadLimits = DEFAULT_LIMITS) -> list[str]:  # fmt: skip
    """Read, stack and write one series; returns the study warnings it produced."""
    warnings: list[str] = []
    sid = series.series_id
    headers = _headers(series, study_id, result.skipped, limits)
    if not headers:
        result.skipped.append(Skipped(series.files[0] if series.files else "", "series without a readable image",
                                      study_id, sid))
        warnings.append(f"series {sid}: no readable image, left out")
        return warnings
    stacks = _decoded_stacks(headers, study_id, sid, result.skipped)
    if not stacks:
        result.skipped.append(Skipped(str(headers[0].path), "series without a usable stack", study_id, sid))
        warnings.append(f"series {sid}: no usable stack, left out")
        return warnings
    matrices = sorted({(g.shape[1], g.shape[2]) for g, _, _ in stacks})
    if len(matrices) > 1:
        text = ", ".join(f"{r}x{c}" for r, c in matrices)
        result.skipped.append(
            Skipped(str(headers[0].path), f"series with mixed matrices ({text}): stored as {len(stacks)} stacks",
                    study_id, sid)
        )
        warnings.append(f"series {sid}: mixed matrices ({text}), {len(stacks)} stacks")
    formats = sorted({h.pixel_format for h in headers})
    if len(formats) > 1:
        text = ", ".join(f"{bits}/{stored} bits{' signed' if sign else ''} {photometric}"
                         for bits, stored, sign, _, photometric in formats)  # fmt: skip
        result.skipped.append(
            Skipped(str(headers[0].path), f"series with mixed pixel formats ({text}): never merged into one stack",
                    study_id, sid)
        )  # fmt: skip
        warnings.append(f"series {sid}: mixed pixel formats ({text}), {len(stacks)} stacks")
    n_images = len(headers) + len(set(series.files) - {h.path for h in headers})  # unreadable files count once
    n_used = sum(g.shape[0] for g, _, _ in stacks)
    if n_used < n_images:
        warnings.append(f"series {sid}: {n_images - n_used} of {n_images} images left out (see the ingest report)")
    description = series.description
    if description is None:
        description = headers[0].series_description
    writer.add_series(sid, description=description, role=role_from_description(description),
                      series_uid=headers[0].series_uid)
    for geometry, image, rescale in stacks:
        writer.add_stack(sid, geometry, image, rescale)
        result.n_slices += geometry.shape[0]
        result.stacks.setdefault(sid, []).append(geometry)
    result.n_series += 1
    result.n_stacks += len(stacks)
    return warnings


def ingest_study(store_root: str, job: StudyJob, limits: ReadLimits = DEFAULT_LIMITS) -> StudyResult:
    """Ingest one study into the store at ``store_root``; it becomes visible only when written whole.

    Never raises for bad input (nor for anything but an interrupt): a file that cannot be read is a report
    line and the rest of its series is written; an unexpected error elsewhere leaves the study out with a
    report line.
    """
    result = StudyResult(job.study_id)
    try:
        with StudyWriter(store_root, job.study_id) as writer:
            warnings: list[str] = []
            for series in job.series:
                warnings.extend(_write_series(writer, series, job.study_id, result, limits))
            if writer.n_stacks == 0:
                result.skipped.append(Skipped("", "study without a usable image: nothing written", job.study_id))
                return result
            writer.commit(warnings, **{SKIPPED_ATTR: to_records(result.skipped)})
            result.written = True
    except SpineError as error:
        result.skipped.append(Skipped("", f"study left out: {error}", job.study_id))
        _nothing_written(result)
    except BaseException as error:  # a bug or an unforeseen file must not stop the whole run
        if not contained(error):
            raise
        last = traceback.extract_tb(error.__traceback__)[-1]
        result.skipped.append(
            Skipped("", f"study left out: unexpected {type(error).__name__}: {error} "
                        f"(at {last.filename}:{last.lineno}; please report)", job.study_id)
        )
        _nothing_written(result)
    return result


def _nothing_written(result: StudyResult) -> None:
    result.written = False
    result.n_series = result.n_stacks = result.n_slices = 0
    result.stacks = {}
