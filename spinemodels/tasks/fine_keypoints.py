"""Task ``fine_keypoints``: the spinal point of a level to a fraction of a millimetre, from a small crop of fixed
millimetres around a point the keypoint model found (``spinemodels.inference.point_refine``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from spinemodels.data.point_crops import PointCropDataset, labelled_points
from spinemodels.errors import ConfigError
from spinemodels.networks.point_refiner import PointRefiner
from spinemodels.registry import Task, register_task


@dataclass
class PointRefinerModelConfig:
    width: int = 16  # channels of the refiner's first stage (twice that in its context branch)


@dataclass
class PointRefinerDataConfig:
    crop_px: int = 64  # pixels on each side of a crop (a multiple of 4)
    step_mm: float = 0.5  # millimetres per crop pixel
    crops_per_point: int = 16  # training crops per label and epoch (each displaced and augmented anew)
    val_crops_per_point: int = 4  # validation crops per label (displaced, not augmented)
    jitter_mm: float = 4.0  # the crop's centre is moved up to this far from the label along rows and columns
    slice_jitter: float = 0.6  # ... and up to this many slices across the stack
    augment_degrees: float = 12.0  # training: random in-plane rotation
    augment_intensity: float = 2.0  # training: strength of the random contrast/gain/offset/noise/blur
    cache_mb: int = 512  # per-worker cache of stacks (their own pixels)

    BOUNDS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "crop_px": (8, 256), "step_mm": (0.05, 5.0), "crops_per_point": (1, None), "val_crops_per_point": (1, None),
        "jitter_mm": (0.0, None), "slice_jitter": (0.0, 2.0), "augment_degrees": (0.0, 180.0),
        "augment_intensity": (0.0, None), "cache_mb": (0, None),
    }  # fmt: skip

    def __post_init__(self) -> None:
        if self.crop_px % 4:
            raise ConfigError(f"data.crop_px: must be a multiple of 4, got {self.crop_px}")


@register_task
class FineKeypointTask(Task):
    name = "fine_keypoints"
    model_config = PointRefinerModelConfig
    data_config = PointRefinerDataConfig

    def build_dataset(self, dataset, source, study_ids, train):
        d = self.config.data
        return PointCropDataset(source, labelled_points(dataset, study_ids), d.crop_px, d.step_mm, train,
                                crops_per_point=d.crops_per_point if train else d.val_crops_per_point,
                                jitter_mm=d.jitter_mm, slice_jitter=d.slice_jitter,
                                augment_degrees=d.augment_degrees, augment_intensity=d.augment_intensity,
                                cache_mb=d.cache_mb)

    def build_network(self, pretrained=None):
        return PointRefiner(self.config.data.crop_px, self.config.data.step_mm, self.config.model.width)

    def loss(self, outputs, batch):
        return F.smooth_l1_loss(outputs.float(), batch["target"].float(), beta=0.5)

    def predict(self, outputs, batch):
        error = (outputs.float() - batch["target"].float()).norm(dim=1).cpu().numpy()
        start = torch.as_tensor(batch["start_mm"]).double().cpu().numpy()  # on the device during validation
        return [{"study_id": study_id, "level": level, "start_mm": float(start[i]), "error_mm": float(error[i])}
                for i, (study_id, level) in enumerate(zip(batch["study_id"], batch["level"], strict=True))]

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        if predictions.empty:
            return {}
        return {"median_error_mm": float(predictions["error_mm"].median()),
                "p95_error_mm": float(predictions["error_mm"].quantile(0.95))}
