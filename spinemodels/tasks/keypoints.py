"""Task ``keypoints``: the in-plane spinal point of each level, from a 2.5D UNet's heatmaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spinedata.constants import LEVELS
from spinemodels.data.spinal import KeypointDataset, grid_and_augment, make_samples
from spinemodels.data.stackio import PhysicalGrid
from spinemodels.heatmaps import heatmap_loss, read_points
from spinemodels.networks.backbones import create_unet
from spinemodels.placement import OFFSETS_FILE, learn_offsets
from spinemodels.registry import Task, register_task


@dataclass
class KeypointModelConfig:
    encoder: str = "efficientnet-b2"  # segmentation-models-pytorch encoder (or tu-<timm name>)
    pretrained: bool = True  # ImageNet encoder weights (cache or network); false trains from scratch
    encoder_depth: int = 5  # encoder stages used by the UNet
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])  # one per stage


@dataclass
class KeypointDataConfig:
    image_size: int = 512  # pixels across the square physical grid the slice window is resampled to
    fov_mm: float = 320.0  # millimetres across that grid, centred on the image centre
    channels: int = 15  # slices around the chosen slice, as input channels
    sigma_px: float = 8.0  # Gaussian of the target heatmaps, in pixels of the resized image
    cache_mb: int = 1024  # per-worker cache of normalised, resampled stacks
    augment_scale: float = 0.1  # training: random zoom, log-uniform within +-this
    augment_shift: float = 0.08  # training: random shift, fraction of the image
    augment_degrees: float = 10.0  # training: random in-plane rotation
    augment_intensity: float = 1.0  # training: strength of the random contrast/gain/offset/noise


@register_task
class KeypointTask(Task):
    name = "keypoints"
    model_config = KeypointModelConfig
    data_config = KeypointDataConfig

    def build_dataset(self, dataset, source, study_ids, train):
        d = self.config.data
        samples = make_samples(dataset, study_ids, need_labels=True)
        return KeypointDataset(source, samples, d.image_size, d.channels, train, d.cache_mb, **grid_and_augment(d))

    def build_network(self, pretrained=None):
        m = self.config.model
        return create_unet(m.encoder, pretrained=m.pretrained if pretrained is None else pretrained,
                           in_channels=self.config.data.channels, classes=len(LEVELS),
                           encoder_depth=m.encoder_depth, decoder_channels=tuple(m.decoder_channels))

    def loss(self, outputs, batch):
        return heatmap_loss(outputs, batch["points"], batch["valid"], self.config.data.sigma_px)

    def predict(self, outputs, batch):
        points, confidence = read_points(outputs, self.config.data.sigma_px)
        points, confidence = points.cpu().numpy(), confidence.cpu().numpy()
        truth, valid = batch["points"].cpu().numpy(), batch["valid"].cpu().numpy()
        rows = []
        for i, study_id in enumerate(batch["study_id"]):
            grid = PhysicalGrid(int(batch["rows"][i]), int(batch["cols"][i]),
                                (float(batch["drow"][i]), float(batch["dcol"][i])), self.config.data.image_size,
                                self.config.data.fov_mm)
            found, known = grid.to_stack(points[i]), grid.to_stack(truth[i])
            for j, level in enumerate(LEVELS):
                ok = bool(valid[i, j])
                rows.append({"study_id": study_id, "level": level, "slice": int(batch["centre"][i]),
                             "row": float(found[j, 0]), "col": float(found[j, 1]),
                             "confidence": float(confidence[i, j]),
                             "row_true": float(known[j, 0]) if ok else np.nan,
                             "col_true": float(known[j, 1]) if ok else np.nan,
                             "error_px": float(np.hypot(*(found[j] - known[j]))) if ok else np.nan})
        return rows

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        if predictions.empty or predictions["error_px"].isna().all():
            return {}
        return {"median_error_px": float(predictions["error_px"].median())}

    def after_fit(self, dataset, train_ids, fold_dir):
        offsets = learn_offsets(dataset.labels, train_ids)
        offsets.to_csv(Path(fold_dir) / OFFSETS_FILE, index=False)
