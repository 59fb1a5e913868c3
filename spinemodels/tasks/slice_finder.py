"""Task ``slice_finder``: which slice of the sagittal stack holds each level's spinal point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from spinedata.constants import LEVELS
from spinemodels.data.spinal import MISSING, SliceFinderDataset, grid_and_augment, make_samples
from spinemodels.networks.backbones import SliceTransformerConfig
from spinemodels.networks.slice_finder import SliceFinder
from spinemodels.registry import Task, labelled_predictions, register_task

PADDING_LOGIT = -1e4
"""Logit given to padded slices so that softmax over slices ignores them (safe in float16)."""


@dataclass
class SliceFinderModelConfig(SliceTransformerConfig):
    backbone: str = "tf_efficientnetv2_b2"  # timm model name, run on every slice (1 channel)
    grad_checkpointing: bool = False  # recompute the backbone's activations in backward (less memory, more compute)


@dataclass
class SliceFinderDataConfig:
    image_size: int = 512  # pixels across the square physical grid every slice is resampled to
    fov_mm: float = 320.0  # millimetres across that grid, centred on the image centre
    n_slices: int = 30  # slices per sample (zero-padded; longer stacks keep a window around the labels)
    cache_mb: int = 1024  # per-worker cache of normalised, resampled stacks
    target_sigma: float = 0.75  # target: a Gaussian over slices of this width (slices) around the label; 0 = one-hot
    augment_scale: float = 0.15  # training: random zoom (same for all slices), log-uniform within +-this
    augment_shift: float = 0.05  # training: random shift, fraction of the grid
    augment_degrees: float = 8.0  # training: random in-plane rotation
    augment_crop: int = 3  # training: up to this many unlabelled slices dropped at each end of the stack
    augment_intensity: float = 1.5  # training: strength of the random contrast/gain/offset/noise/blur


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, L) logits with padded slices pushed to ``PADDING_LOGIT``."""
    return logits.float().masked_fill(~mask.bool()[..., None], PADDING_LOGIT)


def soft_targets(target: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, L) labelled slice (-1 missing) -> (B, N, L) target distribution over the real slices."""
    n = mask.shape[1]
    index = torch.arange(n, device=target.device, dtype=torch.float32)[None, :, None]
    if sigma <= 0:
        dist = (index == target[:, None, :].float()).float()
    else:
        dist = torch.exp(-((index - target[:, None, :].float()) ** 2) / (2 * sigma**2))
    dist = dist * mask[..., None].float()
    return dist / dist.sum(1, keepdim=True).clamp_min(1e-12)


def soft_slices(prob: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """(B, N, L) probabilities -> (B, L) fractional slice: the probability-weighted mean within ``radius``
    of the most probable slice."""
    n = prob.shape[1]
    peak = prob.argmax(1)  # (B, L)
    index = torch.arange(n, device=prob.device)[None, :, None]
    near = ((index - peak[:, None, :]).abs() <= radius).float() * prob
    return (near * index).sum(1) / near.sum(1).clamp_min(1e-12)


def expected_slices(prob: torch.Tensor, radius: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, L) probabilities -> (B, L) slice (``soft_slices``, rounded) and its probability."""
    n = prob.shape[1]
    chosen = soft_slices(prob, radius).round().long().clamp(0, n - 1)
    return chosen, prob.gather(1, chosen[:, None, :])[:, 0]


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
        return SliceFinderDataset(source, samples, data.image_size, data.n_slices, train, data.cache_mb,
                                  augment_crop=data.augment_crop, **grid_and_augment(data))

    def build_network(self, pretrained=None):
        m = self.config.model
        return SliceFinder(m.backbone, pretrained=m.pretrained if pretrained is None else pretrained,
                           d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, dropout=m.dropout,
                           n_levels=len(LEVELS), grad_checkpointing=m.grad_checkpointing)

    def forward(self, network, batch):
        return network(batch["image"], batch["mask"])

    def loss(self, outputs, batch):
        logits = masked_logits(outputs, batch["mask"])  # (B, N, L)
        target = batch["target"]
        known = target >= 0  # (B, L)
        if not known.any():
            return logits.sum() * 0.0
        soft = soft_targets(target.clamp_min(0), batch["mask"], self.config.data.target_sigma)
        nll = -(soft * torch.log_softmax(logits, dim=1)).sum(1)  # (B, L)
        return nll[known].mean()

    def predict(self, outputs, batch):
        prob = slice_probabilities(outputs, batch["mask"])
        chosen, confidence = (t.cpu().numpy() for t in expected_slices(prob))
        first = np.asarray(batch["first"])
        target = batch["target"].cpu().numpy()
        rows = []
        for i, study_id in enumerate(batch["study_id"]):
            for j, level in enumerate(LEVELS):
                true = int(target[i, j])
                rows.append({"study_id": study_id, "level": level, "slice": int(chosen[i, j]) + int(first[i]),
                             "confidence": float(confidence[i, j]),
                             "slice_true": true + int(first[i]) if true >= 0 else MISSING})
        return rows

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        known = labelled_predictions(predictions, "slice_true")
        if known.empty:
            return {}
        diff = (known["slice"] - known["slice_true"]).abs()
        return {"slice_exact": float((diff == 0).mean()), "slice_within_1": float((diff <= 1).mean())}
