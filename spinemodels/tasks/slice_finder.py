"""Task ``slice_finder``: which slice of the sagittal stack holds each level's spinal point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from spinedata.constants import LEVELS
from spinemodels.data.spinal import MISSING, SliceFinderDataset, make_samples
from spinemodels.networks.slice_finder import SliceFinder
from spinemodels.registry import Task, register_task

PADDING_LOGIT = -1e4
"""Logit given to padded slices so that softmax over slices ignores them (safe in float16)."""


@dataclass
class SliceFinderModelConfig:
    backbone: str = "tf_efficientnetv2_b2"  # timm model name, run on every slice (1 channel)
    pretrained: bool = True  # ImageNet weights (cache or network); false trains from scratch
    d_model: int = 256  # width of the transformer across slices
    n_layers: int = 4  # transformer layers
    n_heads: int = 8  # attention heads
    dropout: float = 0.1  # transformer dropout


@dataclass
class SliceFinderDataConfig:
    image_size: int = 512  # every slice padded to square and resized to this many pixels
    n_slices: int = 30  # slices per sample (zero-padded; longer stacks keep a window around the labels)
    cache_mb: int = 1024  # per-worker cache of normalised, resized stacks


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, L) logits with padded slices pushed to ``PADDING_LOGIT``."""
    return logits.float().masked_fill(~mask.bool()[..., None], PADDING_LOGIT)


def slice_probabilities(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, L) logits -> (B, N, L) probabilities over slices, per level."""
    return torch.softmax(masked_logits(logits, mask), dim=1)


@register_task
class SliceFinderTask(Task):
    name = "slice_finder"
    model_config = SliceFinderModelConfig
    data_config = SliceFinderDataConfig

    def build_dataset(self, dataset, source, study_ids, train):
        data = self.config.data
        samples = make_samples(dataset, study_ids, need_labels=True)
        return SliceFinderDataset(source, samples, data.image_size, data.n_slices, train, data.cache_mb)

    def build_network(self, pretrained=None):
        m = self.config.model
        return SliceFinder(m.backbone, pretrained=m.pretrained if pretrained is None else pretrained,
                           d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, dropout=m.dropout,
                           n_levels=len(LEVELS))

    def forward(self, network, batch):
        return network(batch["image"], batch["mask"])

    def loss(self, outputs, batch):
        logits = masked_logits(outputs, batch["mask"])  # (B, N, L)
        b, n, levels = logits.shape
        target = batch["target"]
        if not (target >= 0).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits.permute(0, 2, 1).reshape(b * levels, n), target.reshape(-1),
                               ignore_index=MISSING)

    def predict(self, outputs, batch):
        prob = slice_probabilities(outputs, batch["mask"]).cpu().numpy()  # (B, N, L)
        first = np.asarray(batch["first"])
        target = batch["target"].cpu().numpy()
        rows = []
        for i, study_id in enumerate(batch["study_id"]):
            for j, level in enumerate(LEVELS):
                best = int(prob[i, :, j].argmax())
                true = int(target[i, j])
                rows.append({"study_id": study_id, "level": level, "slice": best + int(first[i]),
                             "confidence": float(prob[i, best, j]),
                             "slice_true": true + int(first[i]) if true >= 0 else MISSING})
        return rows

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        if predictions.empty:
            return {}
        known = predictions[predictions["slice_true"] >= 0]
        if known.empty:
            return {}
        diff = (known["slice"] - known["slice_true"]).abs()
        return {"slice_exact": float((diff == 0).mean()), "slice_within_1": float((diff <= 1).mean())}
