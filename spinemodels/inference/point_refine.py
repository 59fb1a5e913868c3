"""In-plane refinement of the spinal points by the point refiner (task ``fine_keypoints``).

The keypoint model reads a 2.5 mm grid; its points sit about a millimetre from the truth along the canal and
across it, and move by about as much between matrices of one study. The refiner looks again at 32 mm around
each point at 0.5 mm per pixel (``spinemodels.data.point_crops``) and moves it by its answer, twice (the second
look is centred better), averaging each look over a front-to-back flip and over the runs' folds. A move
longer than ``max_move_mm`` means the two models disagree about the structure: the keypoint model's point is
kept and the level gets a problem, which the anatomical checks' fallbacks and warnings then handle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spinemodels.data.point_crops import crop_around
from spinemodels.errors import LocateError
from spinemodels.inference.runs import FoldModels


@dataclass(frozen=True)
class PointRefineOptions:
    """Settings of the in-plane refinement (``spinemodels.inference.locate.locate(point_refine=...)``)."""

    iterations: int = 2  # looks per point, each centred on the previous answer
    flip: bool = True  # average each look with the front-to-back flipped crop
    max_move_mm: float = 12.0  # longer total moves are refused (the level gets a problem; validation: <= 9.5 mm)

    def __post_init__(self) -> None:
        if self.iterations < 1 or not self.max_move_mm > 0:
            raise LocateError(f"point refinement: iterations >= 1 and max_move_mm > 0, got {self}")


@dataclass
class RefinedPoints:
    """The refiner's verdict on a study's spinal points: (5, 2) (row, col), (5,) mm moved, problems per level."""

    points: np.ndarray
    moved_mm: np.ndarray
    problems: list[tuple[str, ...]]


@dataclass
class PointRefiner:
    """Trained ``fine_keypoints`` runs and how to use them."""

    runs: list[FoldModels]
    options: PointRefineOptions = PointRefineOptions()

    @torch.no_grad()
    def offsets_mm(self, volume: np.ndarray, positions: np.ndarray, points: np.ndarray,
                   pixel_spacing: tuple[float, float], study_id: str, oof: bool, device) -> np.ndarray | None:
        """(L, 2) mm (row, col) from each point to where the runs' selected folds put it (their mean); None when
        no fold applies."""
        total, count = np.zeros((len(points), 2)), 0
        for fm in self.runs:
            folds = fm.select(study_id, oof)
            if not folds:
                continue
            data = fm.task.config.data
            crops = np.stack([crop_around(volume, float(positions[j]), points[j], pixel_spacing, data.crop_px,
                                          data.step_mm) for j in range(len(points))])
            image = torch.from_numpy(crops)[:, None].to(device)
            if self.options.flip:
                image = torch.cat([image, image.flip(3)])
            for k in folds:
                out = fm.networks[k](image).float().cpu().numpy().astype(np.float64)
                if self.options.flip:
                    out = (out[: len(points)] + out[len(points):] * np.array([1.0, -1.0])) / 2
                total += out
                count += 1
        return None if count == 0 else total / count

    def refine(self, volume: np.ndarray, positions: np.ndarray, points: np.ndarray,
               pixel_spacing: tuple[float, float], study_id: str, oof: bool, device) -> RefinedPoints | None:
        """The points (row, col) at fractional slices ``positions`` of a Sagittal T2/STIR stack, moved in-plane;
        None when no fold applies (out-of-fold mode)."""
        spacing = np.asarray(pixel_spacing, dtype=np.float64)
        start = np.asarray(points, dtype=np.float64)
        moved = start.copy()
        for _ in range(self.options.iterations):
            offsets = self.offsets_mm(volume, positions, moved, pixel_spacing, study_id, oof, device)
            if offsets is None:
                return None
            moved = moved + offsets / spacing
        distance = np.hypot(*((moved - start) * spacing).T)
        refused = distance > self.options.max_move_mm
        problems = [(f"the point refiner would move it {d:.1f} mm (> {self.options.max_move_mm:g} mm)",) if r
                    else () for d, r in zip(distance, refused, strict=True)]
        return RefinedPoints(np.where(refused[:, None], start, moved), distance, problems)
