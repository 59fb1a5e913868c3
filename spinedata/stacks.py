"""Group slice headers into stacks: regular grids of one orientation, matrix and pixel spacing.

Steps (``docs/design.md``, ``docs/geometry.md``):

1. headers without usable geometry, and second copies of one SOPInstanceUID, become ``Skipped`` lines;
2. group by series, orientation (within ``ORIENTATION_ATOL``), matrix, pixel format (``SliceHeader.pixel_format``:
   a file of another BitsAllocated, sign or photometric never joins a stack) and pixel spacing (``SPACING_RTOL``);
3. where positions repeat, split into volumes: by EchoNumbers / TemporalPositionIdentifier /
   AcquisitionNumber / ImageType / a multi-frame file's other dimension indices when one of them (or a
   combination) explains the repeats, else by order of
   InstanceNumber (the k-th file at each position goes to volume k);
4. sort each volume along ``n = r x c`` and split at gap jumps (> ``GAP_JUMP_FACTOR`` x median, unless a
   short run of missing slices) and at in-plane offset jumps;
5. every piece becomes a ``StackGeometry`` (flags: nonuniform, missing_slices, shear, single_slice).
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations

import numpy as np

from spinedata.dicom import SliceHeader
from spinedata.errors import GeometryError
from spinedata.geometry import (
    GAP_JUMP_FACTOR,
    INPLANE_JUMP_PIXELS,
    ORIENTATION_ATOL,
    POSITION_REPEAT_MM,
    SPACING_RTOL,
    StackGeometry,
    base_gap,
    classify_gaps,
    geometry_problem,
    normalise_orientation,
    plausible_spacing,
    slice_normal,
    unit_orientation,
)
from spinedata.report import Skipped

SHEAR_MIN_FRACTION = 0.8
"""A gantry-tilt drift must explain this fraction of a volume's regular steps to be taken out."""

VOLUME_KEYS = ("echo_number", "temporal_position", "acquisition_number", "image_type", "dimension_index")
"""Header fields that may tell repeated volumes apart, tried alone and in combination (ImageType: e.g. the
water, fat, in- and out-of-phase images of a Dixon series, stored at the same positions in one series;
dimension_index: the other dimensions of a multi-frame file, e.g. echoes or b-values)."""


def _sort_key(header: SliceHeader) -> tuple:
    """Deterministic order of files independent of how they were listed."""
    inst = header.instance_number if header.instance_number is not None else -1
    return inst, header.sop_uid, header.path, header.frame


def _skipped(header: SliceHeader, reason: str) -> Skipped:
    """The report line of a header left out (naming the frame of a multi-frame file)."""
    if header.frame >= 0:
        reason = f"frame {header.frame + 1}: {reason}"
    return Skipped(path=header.path, reason=reason, series_id=header.series_uid)


def _usable(header: SliceHeader) -> tuple[str | None, tuple[float, ...]]:
    """``(reason it cannot join a stack or None, normalised IOP)``."""
    if header.position is None:
        return "no ImagePositionPatient", ()
    if header.orientation is None:
        return "no ImageOrientationPatient", ()
    if header.pixel_spacing is None:
        return "no PixelSpacing", ()
    if header.rows < 1 or header.cols < 1:
        return f"empty matrix {header.rows}x{header.cols}", ()
    problem = geometry_problem(header.position, header.pixel_spacing)
    if problem:
        return problem, ()
    try:
        return None, unit_orientation(header.orientation)
    except GeometryError as error:
        return str(error), ()


def _same_grid(a: SliceHeader, a_iop, b: SliceHeader, b_iop) -> bool:
    """Same series, matrix, pixel format, pixel spacing (relative SPACING_RTOL) and orientation
    (ORIENTATION_ATOL)."""
    if (a.series_uid, a.rows, a.cols, a.pixel_format) != (b.series_uid, b.rows, b.cols, b.pixel_format):
        return False
    if any(abs(x - y) > SPACING_RTOL * abs(x) for x, y in zip(a.pixel_spacing, b.pixel_spacing, strict=True)):
        return False
    return all(abs(x - y) <= ORIENTATION_ATOL for x, y in zip(a_iop, b_iop, strict=True))


def _group(headers: list[SliceHeader], iops: list[tuple[float, ...]]) -> list[list[SliceHeader]]:
    """Groups of headers sharing one grid; the first member of each group is its reference. A header whose
    grid values equal an earlier header's exactly joins that header's group without comparing again."""
    groups: list[tuple[tuple[float, ...], list[SliceHeader]]] = []
    group_of: dict[tuple, list[SliceHeader]] = {}
    for header, iop in zip(headers, iops, strict=True):
        key = (header.series_uid, header.rows, header.cols, header.pixel_format, header.pixel_spacing, iop)
        known = group_of.get(key)
        if known is None:
            for reference_iop, group in groups:
                if _same_grid(group[0], reference_iop, header, iop):
                    known = group
                    break
            else:
                known = []
                groups.append((iop, known))
            group_of[key] = known
        known.append(header)
    return [group for _, group in groups]


def _locations(headers: list[SliceHeader], normal: np.ndarray) -> np.ndarray:
    """An integer location id ``(k,)`` per header: equal ids = the same position (within POSITION_REPEAT_MM)."""
    positions = np.array([h.position for h in headers], dtype=np.float64)
    depths = positions @ normal
    order = np.argsort(depths, kind="stable")
    ids = np.empty(len(headers), dtype=np.int64)
    anchors: list[tuple[float, ...]] = []
    anchor_depths: list[float] = []
    limit = POSITION_REPEAT_MM**2
    for index in order.tolist():
        point, depth = headers[index].position, float(depths[index])
        match = -1
        for k in range(len(anchors) - 1, max(len(anchors) - 8, -1), -1):  # repeats sit next to each other
            if depth - anchor_depths[k] > 2 * POSITION_REPEAT_MM:
                break  # anchors come in depth order: this one and every earlier one are too far to be a repeat
            if sum((p - q) ** 2 for p, q in zip(point, anchors[k], strict=True)) < limit:
                match = k
                break
        if match < 0:
            match = len(anchors)
            anchors.append(point)
            anchor_depths.append(depth)
        ids[index] = match
    return ids


def _split_volumes(headers: list[SliceHeader], normal: np.ndarray) -> list[list[SliceHeader]]:
    """Split a group with repeated positions into volumes without repeats."""
    locations = _locations(headers, normal)
    if len(set(locations.tolist())) == len(headers):
        return [headers]
    best: list[list[int]] | None = None
    for size in range(1, len(VOLUME_KEYS) + 1):
        for keys in combinations(VOLUME_KEYS, size):
            parts: dict[tuple, list[int]] = defaultdict(list)
            for index, header in enumerate(headers):
                parts[tuple(getattr(header, key) for key in keys)].append(index)
            if len(parts) < 2:
                continue
            repeat_free = all(len(set(locations[p].tolist())) == len(p) for p in parts.values())
            if repeat_free and (best is None or len(parts) < len(best)):
                best = [parts[key] for key in sorted(parts, key=lambda k: tuple((v is None, v) for v in k))]
    if best is None:  # nothing in the header tells the volumes apart: k-th file at a position -> volume k
        seen: dict[int, int] = defaultdict(int)
        by_volume: dict[int, list[int]] = defaultdict(list)
        for index in sorted(range(len(headers)), key=lambda i: _sort_key(headers[i])):
            by_volume[seen[locations[index]]].append(index)
            seen[locations[index]] += 1
        best = [by_volume[k] for k in sorted(by_volume)]
    return [[headers[i] for i in part] for part in best]


def _shear_per_mm(positions: np.ndarray, normal: np.ndarray, tolerance_mm: float) -> np.ndarray:
    """In-plane drift per mm along ``n`` ``(3,)`` (gantry tilt; zero for MR), from depth-sorted positions.

    Estimated from the regular steps (gap within GAP_JUMP_FACTOR of the median) and kept only when it
    explains at least SHEAR_MIN_FRACTION of them, and more of them (or better) than no drift does, so
    jumps or interleaved slabs cannot fake a shear."""
    steps = np.diff(positions, axis=0)
    gaps = steps @ normal
    in_plane = steps - gaps[:, None] * normal
    median = float(np.median(gaps)) if len(gaps) else 0.0
    regular = (
        (gaps > POSITION_REPEAT_MM) & (gaps * GAP_JUMP_FACTOR >= median) & (gaps <= GAP_JUMP_FACTOR * median)
    )
    if not regular.any():
        return np.zeros(3)
    drift = np.median(in_plane[regular] / gaps[regular, None], axis=0)

    def score(rate: np.ndarray) -> tuple[int, float]:
        residual = np.linalg.norm(in_plane[regular] - gaps[regular, None] * rate, axis=1)
        return int(np.sum(residual <= tolerance_mm)), -float(residual.sum())

    explained = score(drift)
    if explained > score(np.zeros(3)) and explained[0] >= SHEAR_MIN_FRACTION * int(regular.sum()):
        return drift
    return np.zeros(3)


def _split_jumps(headers: list[SliceHeader], normal: np.ndarray, pixel_spacing) -> list[list[SliceHeader]]:
    """Cut one volume into pieces on one line along ``n`` (same in-plane offset once any shear is taken
    out), each sorted along ``n`` and cut again where the gap jumps."""
    nx, ny, nz = (float(v) for v in normal)
    headers = sorted(headers, key=lambda h: (h.position[0] * nx + h.position[1] * ny + h.position[2] * nz,
                                             _sort_key(h)))  # fmt: skip
    positions = np.array([h.position for h in headers], dtype=np.float64)
    depth = positions @ normal
    tolerance = INPLANE_JUMP_PIXELS * min(pixel_spacing)
    in_plane = positions - depth[:, None] * normal
    if np.ptp(in_plane, axis=0).max() * math.sqrt(3) <= tolerance:
        drift = np.zeros(3)  # every pair of slices within tolerance in plane: one line (the usual MR stack)
    else:
        drift = _shear_per_mm(positions, normal, tolerance)
    offsets = (in_plane - depth[:, None] * drift).tolist()
    lines: list[list[int]] = []
    for index in range(len(headers)):
        for line in lines:
            if math.dist(offsets[index], offsets[line[-1]]) <= tolerance:
                line.append(index)
                break
        else:
            lines.append([index])
    pieces = []
    for line in lines:
        gaps = np.diff(depth[line])
        if len(gaps) == 0:
            pieces.append([headers[i] for i in line])
            continue
        _, jump = classify_gaps(gaps, max(base_gap(gaps), POSITION_REPEAT_MM))
        jump |= gaps <= POSITION_REPEAT_MM
        pieces.extend(
            [headers[i] for i in part] for part in np.split(np.array(line), np.flatnonzero(jump) + 1)
        )
    return pieces


def _geometry(headers: list[SliceHeader], reference: SliceHeader) -> StackGeometry:
    single = None
    if len(headers) == 1:
        single = headers[0].spacing_between_slices or headers[0].slice_thickness
        single = single if plausible_spacing(single) else None  # absent, zero, negative or absurd: the default
    return StackGeometry.from_positions(
        reference.orientation,
        reference.pixel_spacing,
        [h.position for h in headers],
        [h.instance_number if h.instance_number is not None else -1 for h in headers],
        (reference.rows, reference.cols),
        single_slice_spacing=single,
    )


def build_stacks(
    headers: list[SliceHeader],
) -> tuple[list[tuple[StackGeometry, list[SliceHeader]]], list[Skipped]]:
    """Group headers into stacks. Returns ``([(geometry, headers in stack order), ...], skipped)``.

    Stacks come out in a deterministic order (series, then lowest instance number, then position) that
    does not depend on the order of ``headers``. A header that cannot be placed is a ``Skipped`` line.
    """
    skipped: list[Skipped] = []
    usable: list[SliceHeader] = []
    iops: list[tuple[float, ...]] = []
    first_of: dict[tuple[str, int], str] = {}
    for header in sorted(headers, key=lambda h: (h.series_uid, *_sort_key(h))):
        reason, iop = _usable(header)
        if reason is None and header.sop_uid:
            key = (header.sop_uid, header.frame)  # the frames of a multi-frame file share its SOPInstanceUID
            if key in first_of:
                reason = f"duplicate of {first_of[key]} (same SOPInstanceUID)"
            else:
                first_of[key] = header.where
        if reason is None:
            usable.append(header)
            iops.append(iop)
        else:
            skipped.append(_skipped(header, reason))
    stacks: list[tuple[StackGeometry, list[SliceHeader]]] = []
    for group in _group(usable, iops):
        reference = group[0]
        normal = slice_normal(normalise_orientation(reference.orientation))
        for volume in _split_volumes(group, normal):
            for piece in _split_jumps(volume, normal, reference.pixel_spacing):
                try:
                    stacks.append((_geometry(piece, reference), piece))
                except GeometryError as error:
                    skipped.extend(_skipped(h, f"no valid stack geometry: {error}") for h in piece)

    def order(item: tuple[StackGeometry, list[SliceHeader]]) -> tuple:
        geometry, piece = item
        return (
            piece[0].series_uid,
            int(geometry.instance_numbers.min()),
            float(geometry.positions[0] @ geometry.normal),
        )

    stacks.sort(key=order)
    return stacks, skipped
