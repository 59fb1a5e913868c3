"""Stage 1 inference (``spine locate``): every condition's point at every level of every study.

1. Slice finder on each candidate sagittal stack (Sagittal T2/STIR; Sagittal T1 when there is none, with a
   warning); the Sagittal T2/STIR stack where the models are most confident is used.
2. The keypoint UNet on the slices around the chosen slices: the in-plane spinal point of each level.
   On a Sagittal T2/STIR stack each level's slice is then refined to a fractional slice from the CSF across
   the slices around the point (``slice_refine``; the slice finder's slice where the evidence is weak); the
   point goes to LPS mm through the stack's geometry. When a point refiner run (``fine_keypoints``) is given,
   each point is then moved in-plane by it (``point_refine``; refused beyond ``max_move_mm``, a problem).
3. Anatomical checks (``anatomy_checks``: order, spacing, CSF band). When a level fails, other centre slices
   of the stack (the slice finder's runner-up, the stack's middle; slice from the refinement only), then the
   other sagittal stacks are tried; the try with the fewest failing levels is kept, and its
   failing levels get a ``warning`` and a low ``confidence``.
4. Foraminal and subarticular points: spinal point + learned mean offset, placed in the nearest stack of
   their own series (``spinemodels.placement``); they carry their level's warning and confidence.

Fold models of a run are averaged (probabilities). ``oof=True`` uses, for each study, only the fold model
that did not train on it (out-of-fold coordinates for ``spine audit``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from spinedata.constants import CONDITIONS, LEVELS
from spinedata.errors import SpineError
from spinemodels.data.spinal import SPINAL_ROLES
from spinemodels.data.stackio import spinal_stack_candidates
from spinemodels.errors import LocateError
from spinemodels.inference.anatomy_checks import check_levels, level_confidence, slice_support
from spinemodels.inference.point_refine import PointRefineOptions, PointRefiner
from spinemodels.inference.runs import FoldModels, RunDirError
from spinemodels.inference.slice_refine import SliceRefineOptions, prepared_volume, refine_levels
from spinemodels.inference.stage_one_networks import (
    KEYPOINT_SHIFTS,
    keypoint_points,
    load_stage_one,
    slice_probs,
    stack_volume,
)
from spinemodels.placement import OFFSETS_FILE, average_offsets, place_point
from spinemodels.tasks.slice_finder import soft_slices

__all__ = ["COORD_COLUMNS", "LocateError", "load_stage_one", "locate", "locate_study"]

COORD_COLUMNS = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y",
                 "world_x", "world_y", "world_z", "confidence", "stack", "slice", "plane_distance_mm", "warning"]
"""Columns of coords.csv: the competition's label schema, then LPS mm, confidence and placement details."""

MAX_CANDIDATE_STACKS = 4
"""Sagittal stacks tried per study by the slice finder (largest first)."""

FALLBACK_CONFIDENCE = 0.5
"""Factor on the confidence of a point placed outside its own series' stacks or in another series."""


def offsets_for(runs: list[FoldModels], study_id: str, oof: bool) -> pd.DataFrame:
    """Offset table for a study: every fold's (count-weighted mean), or the held-out fold's own."""
    tables = []
    for fm in runs:
        for k in fm.select(study_id, oof):
            path = fm.run.fold_dir(k) / OFFSETS_FILE
            if not path.is_file():
                raise RunDirError(f"{path} is missing; retrain the keypoints run (offsets are written after each fold)")
            tables.append(pd.read_csv(path))
    return average_offsets(tables).set_index(["condition", "level"])


FALLBACK_CENTRES = 6
"""Other centre slices tried on the chosen stack when its points fail the checks (``anatomy_checks``)."""
FALLBACK_SUPPORT = 0.2
"""Slice support given to the points of a fallback that passed every check (the slice finder disagreed): on
validation about one fallback study in ten still sat a level off, so its points rank below the unwarned ones."""
MIN_SAGITTAL_SLICES = 3
"""Sagittal stacks with fewer slices are not used."""
MIN_SAGITTAL_COSINE = 0.7
"""A stack of a sagittal series is used only when its slice normal lies within 45 degrees of left-right."""
UNCHECKED_PENALTY = 2.5
"""Failing levels counted against a try on a stack where the CSF check cannot run (Sagittal T1) when no try
passes every check: such a try then wins only over one with three or more failing levels."""
UNUSABLE_ERRORS = (SpineError, OSError, ValueError, KeyError)
"""What reading or running a stack may raise when the stack itself is unusable (skipped with a warning)."""


@dataclass
class SpinalFit:
    """One try at a study's spinal points: stack, centre slice, points, refinements and the checks' verdict."""

    series_id: str
    stack_index: int
    stack: Any
    role: str
    probs: np.ndarray | None  # (N, 5) slice finder probabilities on this stack
    centre: int  # the keypoint model's centre slice
    positions: np.ndarray  # (5,) fractional slice of each level's point
    refined: list[bool]  # whether each position came from the refinement
    points: np.ndarray  # (5, 2) (row, col)
    heat: np.ndarray  # (5,) heatmap mass
    world: np.ndarray  # (5, 3) LPS mm
    problems: list[tuple[str, ...]]
    how: str = ""  # "" for the slice finder's choice, else which fallback

    @property
    def failed(self) -> int:
        return sum(1 for p in self.problems if p)

    @property
    def badness(self) -> float:
        """Failing levels, plus ``UNCHECKED_PENALTY`` off Sagittal T2/STIR (its CSF is not checked)."""
        return self.failed + (UNCHECKED_PENALTY if self.role != SPINAL_ROLES[0] else 0.0)

    def confidence(self) -> np.ndarray:
        """(5,) confidence of the spinal points (``spinemodels.inference.anatomy_checks.level_confidence``)."""
        if self.how:
            support = np.full(len(LEVELS), FALLBACK_SUPPORT)
        else:
            support = slice_support(self.probs, self.positions)
        return level_confidence(support, self.heat, self.problems)


def refine_volume(stack: Any, cache: dict, step_mm: float) -> np.ndarray:
    """The stack as the slice refinement reads it (``prepared_volume``), once per ``cache``."""
    key = (id(stack), "slice_refine", step_mm)
    if key not in cache:
        cache[key] = prepared_volume(stack_volume(stack, cache), stack.geometry.pixel_spacing, step_mm)
    return cache[key]


def fit_spinal(stack: Any, series_id: str, k: int, role: str, probs: np.ndarray | None, starts: np.ndarray,
               keypoints, study_id: str, oof: bool, device, cache: dict,
               slice_refine: SliceRefineOptions | None, how: str = "",
               keypoint_shifts: tuple[tuple[float, float], ...] = KEYPOINT_SHIFTS,
               refiner: PointRefiner | None = None) -> SpinalFit | None:
    """Keypoints around ``starts`` (5,) (their median is the centre slice), each level's slice refined from its
    start (``slice_refine``; None keeps the starts), the points moved in-plane by ``refiner`` (Sagittal
    T2/STIR only), then the checks. None when no keypoint fold applies."""
    starts = np.asarray(starts, dtype=np.float64)
    centre = int(round(float(np.median(starts))))
    found = keypoint_points(keypoints, stack, centre, study_id, oof, device, cache, keypoint_shifts)
    if found is None:
        return None
    points, heat = found
    csf = role == SPINAL_ROLES[0]
    options = slice_refine or SliceRefineOptions()
    geometry = stack.geometry

    def refined_from(starts_now: np.ndarray, points_now: np.ndarray):
        return refine_levels(refine_volume(stack, cache, options.step_mm), starts_now, points_now,
                             geometry.pixel_spacing, geometry.slice_spacing, options, prepared=True)

    evidence = refined_from(starts, points) if csf else None
    use = slice_refine is not None and evidence is not None
    refined = [bool(use and r.used) for r in evidence] if evidence is not None else [False] * len(LEVELS)
    positions = np.where(refined, [r.position for r in evidence] if evidence else starts, np.round(starts))
    moved = (refiner.refine(stack_volume(stack, cache), positions, points, geometry.pixel_spacing, study_id,
                            oof, device) if csf and refiner is not None else None)
    if moved is not None:
        points = moved.points
        if use and options.second_look:
            again = refined_from(positions, points)
            kept = [first.used and second.used for first, second in zip(evidence, again, strict=True)]
            positions = np.where(kept, [r.position for r in again], positions)
            evidence = [second if keep else first for first, second, keep in zip(evidence, again, kept, strict=True)]
    world = np.array([stack.voxel_to_world(np.array([positions[j], *points[j]], dtype=np.float64))
                      for j in range(len(LEVELS))])
    problems = check_levels(world, evidence)
    if moved is not None:
        problems = [(*mine, *theirs) for mine, theirs in zip(problems, moved.problems, strict=True)]
    return SpinalFit(series_id, k, stack, role, probs, centre, positions, refined, points, heat, world, problems, how)


def fallback_centres(probs: np.ndarray, tried: set[int], n: int) -> list[int]:
    """Centre slices to try after the slice finder's: the best slice of its distribution away from the
    tried ones, the stack's middle, then the slices nearest the middle (at most ``FALLBACK_CENTRES``)."""
    total = probs.sum(1)
    far = [s for s in np.argsort(-total) if all(abs(int(s) - t) >= 2 for t in tried)]
    middle = (n - 1) // 2
    order = ([int(far[0])] if far else []) + sorted(range(n), key=lambda s: (abs(s - middle), s))
    out: list[int] = []
    for s in order:
        if s not in tried and s not in out:
            out.append(s)
    return out[:FALLBACK_CENTRES]


def locate_spinal(study: Any, candidates: list, finders, keypoints, *, oof: bool, device, cache: dict,
                  slice_refine: SliceRefineOptions | None,
                  keypoint_shifts: tuple[tuple[float, float], ...] = KEYPOINT_SHIFTS,
                  refiner: PointRefiner | None = None) -> tuple[SpinalFit | None, list[str]]:
    """The spinal points of a study: the slice finder's choice on the stack where it is most confident; when
    they fail a check, other centre slices of that stack (refinement only), then the other sagittal stacks.
    The first try that passes every check wins; without one, the try with the fewest failing levels (the
    first one on a tie; ``SpinalFit.badness``). None when nothing applies."""
    study_id = str(study.study_id)
    notes: list[str] = []
    scored = []
    for series_id, k, stack in candidates:
        try:
            probs = slice_probs(finders, stack, study_id, oof, device, cache)
        except UNUSABLE_ERRORS as error:
            notes.append(f"study {study_id}: series {series_id} stack {k} unusable ({error}); skipped")
            continue
        if probs is None:
            return None, [f"study {study_id}: no slice_finder fold held it out; skipped (out-of-fold mode)"]
        scored.append((float(probs.max(axis=0).mean()), series_id, k, stack, probs))
    if not scored:
        return None, [*notes, f"study {study_id}: no usable sagittal stack; no points located"]
    role_rank = {role: i for i, role in enumerate(SPINAL_ROLES)}
    scored.sort(key=lambda item: (role_rank.get(study.series[item[1]].role, 9), -item[0]))
    tries: list[SpinalFit] = []

    def attempt(series_id, k, stack, probs, starts, how, options) -> SpinalFit | None:
        fit = fit_spinal(stack, series_id, k, study.series[series_id].role, probs, starts, keypoints, study_id,
                         oof, device, cache, options, how, keypoint_shifts, refiner)
        if fit is not None:
            tries.append(fit)
        return fit

    _, series_id, k, stack, probs = scored[0]
    starts = soft_slices(torch.from_numpy(probs)[None])[0].numpy().astype(np.float64)  # rounded: its slices
    first = attempt(series_id, k, stack, probs, starts, "", slice_refine)
    if first is None:
        return None, [f"study {study_id}: no keypoints fold held it out; skipped (out-of-fold mode)"]
    if first.failed:
        wide = None if slice_refine is None else replace(slice_refine, max_shift=float(slice_refine.window))
        for centre in fallback_centres(probs, {first.centre}, stack.shape[0]):
            fit = attempt(series_id, k, stack, probs, np.full(len(LEVELS), float(centre)),
                          f"centre slice {centre} of series {series_id} (the slice finder's failed the checks)", wide)
            if fit is not None and not fit.failed:
                break
        else:
            for _, other_id, other_k, other, other_probs in scored[1:]:
                fit = attempt(other_id, other_k, other, other_probs,
                              soft_slices(torch.from_numpy(other_probs)[None])[0].numpy().astype(np.float64),
                              f"series {other_id} stack {other_k} (the chosen stack failed the checks)", slice_refine)
                if fit is not None and not fit.failed:
                    break
    passing = [fit for fit in tries if not fit.failed]
    best = passing[0] if passing else min(tries, key=lambda fit: fit.badness)  # the first of the fewest
    if best.how:
        notes.append(f"study {study_id}: the slice finder's points failed the checks ({_first_problem(first)}); "
                     f"used {best.how}")
    if best.failed:
        notes.append(f"study {study_id}: {best.failed} level(s) fail the anatomical checks after "
                     f"{len(tries)} tries ({_first_problem(best)})")
    return best, notes


def _first_problem(fit: SpinalFit) -> str:
    return next(f"{LEVELS[j]}: {p[0]}" for j, p in enumerate(fit.problems) if p) if fit.failed else "none"


def level_warnings(fit: SpinalFit) -> list[str]:
    """The warning of each level's rows: failed checks, a fallback, a spinal stack that is not T2."""
    common = []
    if fit.role != SPINAL_ROLES[0]:
        common.append(f"spinal points found on {fit.role} (no usable {SPINAL_ROLES[0]})")
    if fit.how:
        common.append(f"fallback: {fit.how}")
    out = []
    for problems in fit.problems:
        parts = [*common, *(f"check failed: {p}" for p in problems)]
        out.append("; ".join(parts))
    return out


def locate_study(study: Any, finders, keypoints, *, oof: bool, device,
                 slice_refine: SliceRefineOptions | None = None,
                 keypoint_shifts: tuple[tuple[float, float], ...] = KEYPOINT_SHIFTS,
                 refiner: PointRefiner | None = None) -> tuple[list[dict], list[str]]:
    """Rows of coords.csv for one study (25, or none with a warning when no model or stack applies)."""
    study_id = str(study.study_id)
    warnings: list[str] = []
    candidates = []
    for role in SPINAL_ROLES:
        for series_id, k, stack in spinal_stack_candidates(study, (role,)):
            cosine = abs(float(np.asarray(stack.geometry.normal, dtype=np.float64)[0]))
            if stack.shape[0] < MIN_SAGITTAL_SLICES:
                warnings.append(f"study {study_id}: series {series_id} stack {k} has {stack.shape[0]} slice(s); "
                                "not used")
            elif cosine < MIN_SAGITTAL_COSINE:
                warnings.append(f"study {study_id}: series {series_id} ({role}) stack {k} is not sagittal (slice "
                                f"normal {np.degrees(np.arccos(min(cosine, 1.0))):.0f} degrees from left-right); "
                                "not used")
            else:
                candidates.append((series_id, k, stack))
    if not candidates:
        return [], [*warnings, f"study {study_id}: no usable sagittal stack; no points located"]
    cache: dict = {}
    fit, notes = locate_spinal(study, candidates[:MAX_CANDIDATE_STACKS], finders, keypoints, oof=oof,
                               device=device, cache=cache, slice_refine=slice_refine,
                               keypoint_shifts=keypoint_shifts, refiner=refiner)
    warnings += notes
    if fit is None:
        return [], warnings
    if fit.role != SPINAL_ROLES[0]:
        warnings.append(f"study {study_id}: no usable {SPINAL_ROLES[0]} series; spinal points found on {fit.role}")
    offsets = offsets_for(keypoints, study_id, oof)
    confidence = fit.confidence() * (FALLBACK_CONFIDENCE if fit.role != SPINAL_ROLES[0] else 1.0)
    notes_of_level = level_warnings(fit)
    stack = fit.stack
    rows = []
    for j, level in enumerate(LEVELS):
        (r, c), world = fit.points[j], fit.world[j]
        s, distance = int(np.clip(round(fit.positions[j]), 0, stack.shape[0] - 1)), 0.0
        if fit.refined[j]:  # the nearest slice, and the point's row/col on it (stacks may be sheared)
            projection = stack.project(world)
            s, r, c, distance = projection.slice, projection.row, projection.col, projection.distance_mm
        rows.append(_row(study_id, fit.series_id, fit.stack_index, s, int(stack.instance_numbers[s]), CONDITIONS[0],
                         level, r, c, world, float(confidence[j]), distance, notes_of_level[j]))
    for condition in CONDITIONS[1:]:
        for j, level in enumerate(LEVELS):
            d = offsets.loc[(condition, level)]
            world = fit.world[j] + np.array([d["dx"], d["dy"], d["dz"]], dtype=np.float64)
            placed = place_point(study, world, condition)
            value = float(confidence[j])
            if placed is None:  # cannot happen: the spinal stack exists
                raise LocateError(f"study {study_id}: no stack to place {condition} {level}")
            if placed.warning:
                value *= FALLBACK_CONFIDENCE
                warnings.append(f"study {study_id} {condition} {level}: {placed.warning}")
            note = "; ".join(w for w in (notes_of_level[j], placed.warning) if w)
            rows.append(_row(study_id, placed.series_id, placed.stack_index, placed.slice, placed.instance_number,
                             condition, level, placed.row, placed.col, world, value, placed.distance_mm, note))
    return rows, warnings


def _row(study_id, series_id, stack, slice_, instance, condition, level, row, col, world, confidence, dist,
         warning) -> dict:
    return {"study_id": study_id, "series_id": str(series_id), "instance_number": int(instance),
            "condition": condition, "level": level, "x": float(col), "y": float(row),
            "world_x": float(world[0]), "world_y": float(world[1]), "world_z": float(world[2]),
            "confidence": confidence, "stack": int(stack), "slice": int(slice_),
            "plane_distance_mm": float(dist), "warning": warning}


def locate(dataset: Any, run_paths: list[str | Path], *, study_ids: list[str] | None = None, oof: bool = False,
           device: str | None = None, progress: bool = True,
           slice_refine: SliceRefineOptions | None = SliceRefineOptions(),
           keypoint_shifts: tuple[tuple[float, float], ...] = KEYPOINT_SHIFTS,
           point_refine: PointRefineOptions | None = PointRefineOptions()) -> tuple[pd.DataFrame, list[str]]:
    """Locate every condition and level of every (or the given) study of an opened dataset.

    ``slice_refine``: settings of the sub-slice refinement of the spinal points (None: the slice finder's
    slices as they are). Returns coords (``COORD_COLUMNS``) and the warnings (also in the rows' ``warning``
    column). ``keypoint_shifts``: sub-pixel placements of the keypoint grid whose points are averaged.
    ``point_refine``: settings of the in-plane refinement by the ``fine_keypoints`` runs among ``run_paths``
    (None, or no such run: the keypoint model's points as they are).
    """
    from rich.progress import Progress

    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    finders, keypoints, refiners = load_stage_one(run_paths, torch_device)
    refiner = PointRefiner(refiners, point_refine) if refiners and point_refine is not None else None
    ids = [str(s) for s in (study_ids if study_ids is not None else dataset.study_ids)]
    rows, warnings = [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("locating", total=len(ids))
        for study_id in ids:
            found, notes = locate_study(dataset.study(study_id), finders, keypoints, oof=oof, device=torch_device,
                                        slice_refine=slice_refine, keypoint_shifts=keypoint_shifts,
                                        refiner=refiner)
            rows += found
            warnings += notes
            bar.advance(task)
    return pd.DataFrame(rows, columns=COORD_COLUMNS), warnings
