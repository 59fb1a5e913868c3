"""Stage 1 inference (``spine locate``): every condition's point at every level of every study.

1. Slice finder on each candidate sagittal stack (Sagittal T2/STIR; Sagittal T1 when there is none, with a
   warning); the stack where the models are most confident is used.
2. The keypoint UNet on the slices around the chosen slices: the in-plane spinal point of each level.
   On a Sagittal T2/STIR stack each level's slice is then refined to a fractional slice from the CSF across
   the slices around the point (``spinemodels.slice_refine``; the slice finder's slice where the evidence
   is weak); the point goes to LPS mm through the stack's geometry.
3. Foraminal and subarticular points: spinal point + learned mean offset, placed in the nearest stack of
   their own series (``spinemodels.placement``).

Fold models of a run are averaged (probabilities). ``oof=True`` uses, for each study, only the fold model
that did not train on it (out-of-fold coordinates for ``spine audit``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from spinedata.constants import CONDITIONS, LEVELS
from spinedata.errors import SpineError
from spinemodels.data.spinal import SPINAL_ROLES, slice_window
from spinemodels.data.stackio import PhysicalGrid, normalise, spinal_stack_candidates
from spinemodels.heatmaps import peak_candidates
from spinemodels.placement import OFFSETS_FILE, average_offsets, place_point
from spinemodels.rundir import RunDir, RunDirError
from spinemodels.slice_refine import Refinement, SliceRefineOptions, refine_levels
from spinemodels.tasks.slice_finder import expected_slices, slice_probabilities, soft_slices

COORD_COLUMNS = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y",
                 "world_x", "world_y", "world_z", "confidence", "stack", "slice", "plane_distance_mm", "warning"]
"""Columns of coords.csv: the competition's label schema, then LPS mm, confidence and placement details."""

MAX_CANDIDATE_STACKS = 4
"""Sagittal stacks tried per study by the slice finder (largest first)."""

LEVEL_CANDIDATES = 3
"""Peaks considered per level heatmap when the levels are decoded together."""
MIN_LEVEL_GAP_MM = 12.0
"""Consecutive levels must lie at least this far apart along the head-foot axis (LPS z), head first."""

FALLBACK_CONFIDENCE = 0.5
"""Factor on the confidence of a point placed outside its own series' stacks or in another series."""


class LocateError(SpineError):
    """The models given to ``locate`` cannot be used together."""


@dataclass
class FoldModels:
    """The trained folds of one run: networks, config and the fold of each study."""

    run: RunDir
    task: Any
    networks: dict[int, torch.nn.Module]
    study_fold: dict[str, int]

    @classmethod
    def load(cls, run: RunDir, device: torch.device) -> FoldModels:
        folds = run.trained_folds()
        if not folds:
            raise RunDirError(f"{run.path} has no trained fold (no fold_*/best.pt)")
        networks, task = {}, None
        for k in folds:
            task, networks[k] = run.load_network(k, device)
        table = run.folds()
        return cls(run, task, networks, dict(zip(table["study_id"].astype(str), table["fold"], strict=True)))

    def select(self, study_id: str, oof: bool) -> list[int]:
        """Folds to average for a study: all, or (oof) only the one that held it out (empty if none did)."""
        if not oof:
            return list(self.networks)
        fold = self.study_fold.get(study_id)
        return [fold] if fold in self.networks else []


def load_stage_one(run_paths: list[str | Path], device: torch.device) -> tuple[list[FoldModels], list[FoldModels]]:
    """Split run directories into slice-finder and keypoint runs (each needs at least one)."""
    finders, keypoints = [], []
    for path in run_paths:
        run = RunDir(path)
        task = run.config().task
        if task == "slice_finder":
            finders.append(FoldModels.load(run, device))
        elif task == "keypoints":
            keypoints.append(FoldModels.load(run, device))
        else:
            raise LocateError(f"{path} is a {task!r} run; locate takes slice_finder and keypoints runs")
    if not finders or not keypoints:
        missing = "slice_finder" if not finders else "keypoints"
        raise LocateError(f"locate needs a {missing} run among --model (trained with `spine train`)")
    return finders, keypoints


def _volume(stack: Any, cache: dict) -> np.ndarray:
    key = (id(stack), "raw")
    if key not in cache:
        cache[key] = np.asarray(stack.read())
    return cache[key]


def _on_grid(stack: Any, grid: PhysicalGrid, cache: dict) -> np.ndarray:
    """The stack normalised and resampled to ``grid`` (once per stack and grid)."""
    key = (id(stack), grid)
    if key not in cache:
        cache[key] = grid.apply(normalise(_volume(stack, cache)))
    return cache[key]


@torch.no_grad()
def slice_probs(runs: list[FoldModels], stack: Any, study_id: str, oof: bool, device, cache) -> np.ndarray | None:
    """(N, 5) probability of each slice per level, averaged over the runs' selected folds."""
    total, count = None, 0
    for fm in runs:
        data = fm.task.config.data
        grid = PhysicalGrid.of_stack(stack, data.image_size, data.fov_mm)
        image = torch.from_numpy(_on_grid(stack, grid, cache))[None].to(device)
        mask = torch.ones(image.shape[:2], dtype=torch.bool, device=device)
        for k in fm.select(study_id, oof):
            prob = slice_probabilities(fm.networks[k](image, mask), mask)[0].cpu().numpy()
            total = prob if total is None else total + prob
            count += 1
    return None if count == 0 else total / count


@torch.no_grad()
def keypoint_points(runs: list[FoldModels], stack: Any, centre: int, study_id: str, oof: bool, device, cache):
    """(5, 2) (row, col) in the stack's pixel grid and (5,) confidence, or None when no fold applies."""
    total, count, sigma, grid = None, 0, None, None
    for fm in runs:
        data = fm.task.config.data
        own = PhysicalGrid.of_stack(stack, data.image_size, data.fov_mm)
        if grid is not None and own != grid:
            raise LocateError("keypoint runs given together must share data.image_size and data.fov_mm")
        grid, sigma = own, data.sigma_px
        size = grid.size
        window = slice_window(_on_grid(stack, grid, cache), centre, data.channels)
        image = torch.from_numpy(window)[None].to(device)
        for k in fm.select(study_id, oof):
            prob = torch.softmax(fm.networks[k](image).float().flatten(-2), -1).view(1, len(LEVELS), size, size)
            total = prob if total is None else total + prob
            count += 1
    if count == 0:
        return None
    log_p = torch.log((total / count).clamp_min(1e-20))[0].double().cpu().numpy()  # (5, S, S)
    candidates = [peak_candidates(log_p[j], sigma, LEVEL_CANDIDATES) for j in range(len(LEVELS))]
    chosen = ordered_levels(candidates, lambda rc: stack.voxel_to_world(
        np.array([centre, *grid.to_stack(rc)], dtype=np.float64))[2])
    points = np.array([candidates[j][i][0] for j, i in enumerate(chosen)])
    confidence = np.array([candidates[j][i][1] for j, i in enumerate(chosen)])
    return grid.to_stack(points), confidence


def ordered_levels(candidates: list[list[tuple[np.ndarray, float]]], height) -> tuple[int, ...]:
    """Pick one peak per level so that the levels run head to foot, each at least ``MIN_LEVEL_GAP_MM``
    below the one above (``height(rc)``: LPS z of a point), with the largest product of peak masses.
    Without any such choice, the strongest peak of every level."""
    z = [[height(rc) for rc, _ in level] for level in candidates]
    best, best_score = tuple(0 for _ in candidates), -np.inf
    for choice in itertools.product(*(range(len(level)) for level in candidates)):
        heights = [z[j][i] for j, i in enumerate(choice)]
        if any(a - b < MIN_LEVEL_GAP_MM for a, b in itertools.pairwise(heights)):
            continue
        score = sum(np.log(max(candidates[j][i][1], 1e-12)) for j, i in enumerate(choice))
        if score > best_score:
            best, best_score = choice, score
    return best


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


def spinal_slices(stack: Any, role: str, probs: np.ndarray, finder: np.ndarray, points: np.ndarray,
                  slice_refine: SliceRefineOptions | None, cache: dict) -> list[Refinement]:
    """Each level's fractional slice: refined (``spinemodels.slice_refine``) on a Sagittal T2/STIR stack
    when ``slice_refine`` is given, else (and where the refinement is not used) the slice finder's slice
    ``finder`` ``(5,)`` (``expected_slices`` of ``probs``)."""
    if slice_refine is None:
        return [Refinement(float(s), False, np.nan, 0.0, "refinement off") for s in finder]
    if role != SPINAL_ROLES[0]:
        return [Refinement(float(s), False, np.nan, 0.0, f"CSF is not bright on {role}") for s in finder]
    soft = soft_slices(torch.from_numpy(probs)[None])[0].numpy().astype(np.float64)
    found = refine_levels(_volume(stack, cache), soft, points, stack.geometry.pixel_spacing,
                          stack.geometry.slice_spacing, slice_refine)
    return [r if r.used else Refinement(float(s), False, r.spread, r.share, r.reason)
            for r, s in zip(found, finder, strict=True)]


def locate_study(study: Any, finders, keypoints, *, oof: bool, device,
                 slice_refine: SliceRefineOptions | None = None) -> tuple[list[dict], list[str]]:
    """Rows of coords.csv for one study (25, or fewer with warnings when no model or stack applies)."""
    study_id = str(study.study_id)
    warnings: list[str] = []
    candidates = spinal_stack_candidates(study, SPINAL_ROLES)
    if not candidates:
        return [], [f"study {study_id}: no sagittal stack; no points located"]
    cache: dict = {}
    best = None
    for series_id, k, stack in candidates[:MAX_CANDIDATE_STACKS]:
        probs = slice_probs(finders, stack, study_id, oof, device, cache)
        if probs is None:
            return [], [f"study {study_id}: no slice_finder fold held it out; skipped (out-of-fold mode)"]
        score = float(probs.max(axis=0).mean())
        if best is None or score > best[0]:
            best = (score, series_id, k, stack, probs)
    _, series_id, k, stack, probs = best
    role = study.series[series_id].role
    if role != SPINAL_ROLES[0]:
        warnings.append(f"study {study_id}: no {SPINAL_ROLES[0]} series; spinal points found on {role}")
    chosen, chosen_conf = expected_slices(torch.from_numpy(probs)[None])
    slices, slice_conf = chosen[0].numpy(), chosen_conf[0].numpy()  # (5,)
    centre = int(round(float(np.median(slices))))
    found = keypoint_points(keypoints, stack, centre, study_id, oof, device, cache)
    if found is None:
        return [], [f"study {study_id}: no keypoints fold held it out; skipped (out-of-fold mode)"]
    points, heat_conf = found
    refined = spinal_slices(stack, role, probs, slices.astype(np.float64), points, slice_refine, cache)
    offsets = offsets_for(keypoints, study_id, oof)
    rows = []
    spinal_world = {}
    for j, level in enumerate(LEVELS):
        (r, c), position = points[j], refined[j].position
        world = stack.voxel_to_world(np.array([position, r, c], dtype=np.float64))
        s, distance = int(slices[j]), 0.0
        if refined[j].used:  # the nearest slice, and the point's row/col on it (stacks may be sheared)
            projection = stack.project(world)
            s, r, c, distance = projection.slice, projection.row, projection.col, projection.distance_mm
        spinal_world[level] = world
        rows.append(_row(study_id, series_id, k, s, int(stack.instance_numbers[s]), CONDITIONS[0], level, r, c,
                         world, float(slice_conf[j] * heat_conf[j]), distance, ""))
    for condition in CONDITIONS[1:]:
        for j, level in enumerate(LEVELS):
            d = offsets.loc[(condition, level)]
            world = spinal_world[level] + np.array([d["dx"], d["dy"], d["dz"]], dtype=np.float64)
            placed = place_point(study, world, condition)
            confidence = float(slice_conf[j] * heat_conf[j])
            if placed is None:  # cannot happen: the spinal stack exists
                raise LocateError(f"study {study_id}: no stack to place {condition} {level}")
            if placed.warning:
                confidence *= FALLBACK_CONFIDENCE
                warnings.append(f"study {study_id} {condition} {level}: {placed.warning}")
            rows.append(_row(study_id, placed.series_id, placed.stack_index, placed.slice, placed.instance_number,
                             condition, level, placed.row, placed.col, world, confidence, placed.distance_mm,
                             placed.warning))
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
           slice_refine: SliceRefineOptions | None = SliceRefineOptions()) -> tuple[pd.DataFrame, list[str]]:
    """Locate every condition and level of every (or the given) study of an opened dataset.

    ``slice_refine``: settings of the sub-slice refinement of the spinal points (None: the slice finder's
    slices as they are). Returns coords (``COORD_COLUMNS``) and the warnings (also in the rows' ``warning``
    column).
    """
    from rich.progress import Progress

    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    finders, keypoints = load_stage_one(run_paths, torch_device)
    ids = [str(s) for s in (study_ids if study_ids is not None else dataset.study_ids)]
    rows, warnings = [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("locating", total=len(ids))
        for study_id in ids:
            found, notes = locate_study(dataset.study(study_id), finders, keypoints, oof=oof, device=torch_device,
                                        slice_refine=slice_refine)
            rows += found
            warnings += notes
            bar.advance(task)
    return pd.DataFrame(rows, columns=COORD_COLUMNS), warnings
