"""What the stage-1 networks say about one sagittal stack: the slice finder's slice probabilities and the
keypoint model's in-plane points (on the fixed-millimetre grid, averaged over the runs' folds and over
sub-pixel placements of the grid), and loading the runs that give them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from spinedata.constants import LEVELS
from spinemodels.data.spinal import slice_window
from spinemodels.data.stackio import PhysicalGrid
from spinemodels.errors import LocateError
from spinemodels.heatmaps import peak_candidates
from spinemodels.inference.anatomy_checks import MIN_LEVEL_GAP_MM
from spinemodels.inference.runs import FoldModels, runs_for
from spinemodels.tasks.slice_finder import slice_probabilities

LEVEL_CANDIDATES = 3
"""Peaks considered per level heatmap when the levels are decoded together."""


def keypoint_shift_set(n: int) -> tuple[tuple[float, float], ...]:
    """``n`` = k * k placements of the keypoint grid (grid pixels): moved by 0, 1/k, ..., (k-1)/k of a grid
    pixel along each axis (1: the grid as it is; 4: also by half a pixel along each axis and both)."""
    k = round(n**0.5)
    if n < 1 or k * k != n or k > 4:
        raise LocateError(f"keypoint shifts: 1, 4, 9 or 16 placements, got {n}")
    return tuple((i / k, j / k) for i in range(k) for j in range(k))


KEYPOINT_SHIFTS = keypoint_shift_set(9)
"""Sub-pixel placements of the keypoint grid (grid pixels) whose points are averaged (chosen on validation:
docs/benchmarks.md, "The demo's stage 1")."""
SHIFT_MATCH_SIGMAS = 2.0
"""A shifted grid's peak counts for a level when within this many heatmap sigmas of the unshifted point."""

class StageOneRuns(NamedTuple):
    """The loaded stage-1 runs: slice finders, keypoint models and (optional) point refiners."""

    finders: list[FoldModels]
    keypoints: list[FoldModels]
    refiners: list[FoldModels]


def load_stage_one(run_paths: list[str | Path], device: torch.device) -> StageOneRuns:
    """Split run directories (or folders of runs) into slice-finder, keypoint and point-refiner
    (``fine_keypoints``) runs; the first two need at least one each, the refiners are optional."""
    found: dict[str, list[FoldModels]] = {"slice_finder": [], "keypoints": [], "fine_keypoints": []}
    for run, task in runs_for(run_paths, tuple(found), "locate", LocateError):
        found[task].append(FoldModels.load(run, device))
    for needed in ("slice_finder", "keypoints"):
        if not found[needed]:
            raise LocateError(f"locate needs a {needed} run among --model (trained with `spine train`)")
    return StageOneRuns(found["slice_finder"], found["keypoints"], found["fine_keypoints"])


def stack_volume(stack: Any, cache: dict) -> np.ndarray:
    """The stack's pixels, read once per ``cache``."""
    key = (id(stack), "raw")
    if key not in cache:
        cache[key] = np.asarray(stack.read())
    return cache[key]


def _on_grid(stack: Any, grid: PhysicalGrid, cache: dict) -> np.ndarray:
    """The stack resampled to ``grid`` and normalised there (once per stack and grid)."""
    key = (id(stack), grid)
    if key not in cache:
        cache[key] = grid.normalised(stack_volume(stack, cache))
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
def _keypoint_log_probs(runs: list[FoldModels], stack: Any, centre: int, study_id: str, oof: bool, device, cache,
                        shift: tuple[float, float]):
    """The runs' mean heatmap probabilities as log (5, S, S) on the grid placed at ``shift``, with the grid and
    the heatmaps' sigma; None when no fold applies."""
    total, count, sigma, grid = None, 0, None, None
    for fm in runs:
        data = fm.task.config.data
        own = PhysicalGrid.of_stack(stack, data.image_size, data.fov_mm, shift)
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
    return torch.log((total / count).clamp_min(1e-20))[0].double().cpu().numpy(), grid, sigma


def keypoint_points(runs: list[FoldModels], stack: Any, centre: int, study_id: str, oof: bool, device, cache,
                    shifts: tuple[tuple[float, float], ...] = KEYPOINT_SHIFTS):
    """(5, 2) (row, col) in the stack's pixel grid and (5,) confidence, or None when no fold applies.

    The levels are chosen on the unshifted grid; each point is then the mean, in the stack's pixels, of its
    peak on the grid placed at every one of ``shifts`` (sub-pixel placements: the network's reading of one
    grid pixel's content averages out)."""
    base = _keypoint_log_probs(runs, stack, centre, study_id, oof, device, cache, (0.0, 0.0))
    if base is None:
        return None
    log_p, grid, sigma = base
    candidates = [peak_candidates(log_p[j], sigma, LEVEL_CANDIDATES) for j in range(len(LEVELS))]
    chosen = ordered_levels(candidates, lambda rc: stack.voxel_to_world(
        np.array([centre, *grid.to_stack(rc)], dtype=np.float64))[2])
    points = grid.to_stack(np.array([candidates[j][i][0] for j, i in enumerate(chosen)]))
    confidence = np.array([candidates[j][i][1] for j, i in enumerate(chosen)])
    found = [points]
    for shift in shifts:
        if tuple(shift) == (0.0, 0.0):
            continue
        other_log_p, other, _ = _keypoint_log_probs(runs, stack, centre, study_id, oof, device, cache, shift)
        near = np.full_like(points, np.nan)
        for j in range(len(LEVELS)):
            expected = other.to_grid(points[j])
            peaks = [rc for rc, _ in peak_candidates(other_log_p[j], sigma, LEVEL_CANDIDATES)]
            if not peaks:
                continue
            best = min(peaks, key=lambda rc: float(np.linalg.norm(rc - expected)))
            if np.linalg.norm(best - expected) <= SHIFT_MATCH_SIGMAS * sigma:
                near[j] = other.to_stack(best)
        found.append(near)
    return np.nanmean(np.stack(found), axis=0), confidence


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
