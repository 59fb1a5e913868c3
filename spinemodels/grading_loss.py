"""Losses that follow the competition metric: class-weighted cross-entropy and any_severe_spinal.

Both are the training-time counterparts of ``spinedata.metric`` (same weights 1/2/4, same definitions),
written on logits with missing labels (-1) ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spinedata.constants import MISSING, SEVERITY_WEIGHTS

SEVERE = 2


def class_weight_tensor(weights=SEVERITY_WEIGHTS, device=None) -> torch.Tensor:
    """``(3,)`` float32 class weights (Normal/Mild, Moderate, Severe)."""
    return torch.as_tensor(list(weights), dtype=torch.float32, device=device)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights=SEVERITY_WEIGHTS) -> torch.Tensor:
    """``sum(w[y] * -log p[y]) / sum(w[y])`` over entries with ``target >= 0``.

    logits: ``(..., 3)``; target: ``(...)`` int codes, -1 missing. Zero (with a graph) when nothing is labelled.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_target = target.reshape(-1)
    if not (flat_target >= 0).any():
        return flat_logits.sum() * 0.0
    return F.cross_entropy(flat_logits, flat_target, weight=class_weight_tensor(weights, logits.device),
                           ignore_index=MISSING)


def any_severe_loss(logits: torch.Tensor, target: torch.Tensor, weights=SEVERITY_WEIGHTS) -> torch.Tensor:
    """The metric's any_severe_spinal term on spinal logits ``(B, L, 3)`` and targets ``(B, L)``.

    Per study over its labelled levels: label = any level Severe, prediction = the largest P(Severe),
    weight = the largest class weight; a weighted binary log loss over studies with any labelled level.
    """
    known = target >= 0
    has_any = known.any(dim=1)
    if not has_any.any():
        return logits.sum() * 0.0
    p_severe = torch.softmax(logits.float(), dim=-1)[..., SEVERE].masked_fill(~known, 0.0)
    prediction = p_severe.max(dim=1).values.clamp(1e-7, 1 - 1e-7)
    label = ((target == SEVERE) & known).any(dim=1).float()
    w = class_weight_tensor(weights, logits.device)[target.clamp_min(0)].masked_fill(~known, 0.0).max(dim=1).values
    loss = F.binary_cross_entropy(prediction[has_any], label[has_any], reduction="none")
    return (w[has_any] * loss).sum() / w[has_any].sum()
