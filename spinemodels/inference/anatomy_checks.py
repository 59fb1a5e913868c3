"""Anatomical sanity checks of one study's located spinal points (stage 1), and what they make of confidence.

Each level's spinal point is checked against what any lumbar spine looks like, in millimetres:

- **order**: the five levels run head to foot (LPS z falls by at least ``MIN_LEVEL_GAP_MM`` from each level
  to the next);
- **spacing**: neighbouring levels lie ``LEVEL_DISTANCE_MM`` apart (adult disc-to-disc distances are about
  25-45 mm; the synthetic spines 24-39 mm), and each of the four distances within ``SPACING_RATIO`` of
  their median (the synthetic spines 0.79-1.14): a level put on its neighbour's disc leaves a double gap;
- **CSF** (Sagittal T2/STIR only, where CSF is bright): the sub-slice refinement
  (``spinemodels.inference.slice_refine``) finds the bright band of the dural sac around the point, centred
  within its ``max_shift`` of the slice used: the point is on the canal and the slice near its left-right
  middle.

Order and spacing are checks of the chain of levels: when one pair fails, which side is wrong is unknown,
so every level gets the problem. A level that fails a check gets the problems as text;
``spinemodels.inference.locate`` then tries its fallbacks and otherwise writes them as the row's ``warning``,
with a confidence multiplied by ``FAILED_CHECK_FACTOR``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from spinedata.constants import LEVELS
from spinemodels.inference.slice_refine import Refinement

MIN_LEVEL_GAP_MM = 12.0
"""Consecutive levels must lie at least this far apart along the head-foot axis (LPS z), head first."""
LEVEL_DISTANCE_MM = (18.0, 55.0)
"""Plausible 3D distance between the spinal points of neighbouring levels."""
SPACING_RATIO = (0.6, 1.5)
"""Plausible ratio of one inter-level distance to the median of the four."""
FAILED_CHECK_FACTOR = 0.05
"""Factor on the confidence of a point whose level failed a check."""


def check_levels(world: np.ndarray, refinements: Sequence[Refinement] | None) -> list[tuple[str, ...]]:
    """Problems of each level's spinal point (empty tuple: all checks pass).

    ``world``: (5, 3) LPS mm of the spinal points, L1/L2 first; ``refinements``: the refinement of each
    level (from the slice the point was located on), or None where CSF is not bright (Sagittal T1).
    """
    world = np.asarray(world, dtype=np.float64)
    if world.shape != (len(LEVELS), 3):
        raise ValueError(f"world must be ({len(LEVELS)}, 3), got {world.shape}")
    problems: list[list[str]] = [[] for _ in LEVELS]
    low, high = LEVEL_DISTANCE_MM
    distances = np.linalg.norm(np.diff(world, axis=0), axis=1)
    typical = max(float(np.median(distances)), 1e-6)
    for j, k in itertools.pairwise(range(len(LEVELS))):
        pair = f"{LEVELS[j]}-{LEVELS[k]}"
        drop = world[j, 2] - world[k, 2]
        if not drop >= MIN_LEVEL_GAP_MM:
            note = f"{pair} not head to foot ({drop:.0f} mm along z)"
            problems[j].append(note)
            problems[k].append(note)
        distance = float(distances[j])
        if not low <= distance <= high:
            note = f"{pair} {distance:.0f} mm apart (plausible {low:.0f}-{high:.0f})"
            problems[j].append(note)
            problems[k].append(note)
        elif not SPACING_RATIO[0] <= distance / typical <= SPACING_RATIO[1]:
            note = f"{pair} {distance:.0f} mm apart, {distance / typical:.1f} x the median gap ({typical:.0f} mm)"
            problems[j].append(note)
            problems[k].append(note)
    structural = next((p[0] for p in problems if p), None)
    if structural is not None:  # which side of a bad gap is wrong is unknown: the whole chain is suspect
        for p in problems:
            if not p:
                p.append(f"another level fails: {structural}")
    if refinements is not None:
        for j, refinement in enumerate(refinements):
            if not refinement.used:
                problems[j].append(f"no CSF band of the dural sac on this slice: {refinement.reason}")
    return [tuple(p) for p in problems]


def slice_support(probs: np.ndarray | None, positions: np.ndarray, radius: int = 1) -> np.ndarray:
    """(5,) the slice finder's probability that each level lies within ``radius`` slices of ``positions``
    (fractional slices; ``probs`` (N, 5)); ones when there are no probabilities."""
    positions = np.asarray(positions, dtype=np.float64)
    if probs is None:
        return np.ones(len(positions))
    n = probs.shape[0]
    index = np.arange(n)[:, None]
    near = np.abs(index - np.clip(np.round(positions), 0, n - 1)[None, :]) <= radius
    return (probs * near).sum(0)


def level_confidence(support: np.ndarray, heat: np.ndarray, problems: Sequence[tuple[str, ...]]) -> np.ndarray:
    """(5,) confidence of each level's spinal point: slice support x heatmap mass, times
    ``FAILED_CHECK_FACTOR`` where a check failed; in [0, 1]."""
    factor = np.array([FAILED_CHECK_FACTOR if p else 1.0 for p in problems])
    return np.clip(np.asarray(support, dtype=np.float64) * np.asarray(heat, dtype=np.float64) * factor, 0.0, 1.0)
