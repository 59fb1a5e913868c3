"""Stage-2 graders: a time-distributed CNN over the slices of one crop, a transformer across slices, 3 classes.

One sample is one level (and side): crops ``(B, N, S, S)`` with the level and side as ids. The backbone runs
on every slice and a transformer attends across them (the seed's design), or, with ``slices_as_channels``,
once on the N slices as channels (2.5D; a third of the cost at 3 slices, for the small CPU configs). One network is
shared by every level and side of its group, and learned level and side embeddings tell it which disc it
looks at (severity priors differ strongly between L1/L2 and L4/L5). The output is the class-prior logit of
that level and side plus a learned correction (zero-initialised), so an untrained grader predicts the
weighted training priors: no grader starts worse than the class-prior baseline.

``grid_outputs`` applies a grader to a study's grid of crops ``(B, L, K, N, S, S)`` (inference, the master).
"""

from __future__ import annotations

import torch
from torch import nn

from spinedata.constants import LEVELS, SEVERITIES
from spinemodels.networks.backbones import create_backbone
from spinemodels.networks.slice_finder import sinusoidal_encoding

MAX_SLICES = 64
"""Longest slice sequence the positional encoding covers."""


class SliceSequenceGrader(nn.Module):
    """``(B, N, S, S)`` crops + ``(B,)`` level and side ids -> ``(B, 3)`` logits (Normal/Mild, Moderate, Severe).

    Buffers (saved with the weights): ``prior_logit`` ``(levels, sides, 3)``, the log of the weighted training
    priors the output starts from; ``log_correction`` ``(3,)``, added in eval mode only, maps a model trained
    on oversampled classes back to the natural class priors (``spinemodels.calibration.oversampling_correction``).
    """

    def __init__(self, backbone: str, *, pretrained: bool, d_model: int = 256, n_layers: int = 4,
                 n_heads: int = 8, dropout: float = 0.1, n_levels: int = len(LEVELS), n_sides: int = 1,
                 level_embedding: bool = True, grad_checkpointing: bool = False, slices_as_channels: int = 0):
        super().__init__()
        self.slices_as_channels = slices_as_channels
        self.backbone = create_backbone(backbone, pretrained=pretrained, in_chans=slices_as_channels or 1)
        if grad_checkpointing:  # timm: recompute activations block by block in backward
            self.backbone.set_grad_checkpointing(True)
        self.project = nn.Linear(self.backbone.num_features, d_model)
        self.register_buffer("position", sinusoidal_encoding(MAX_SLICES, d_model), persistent=False)
        self.level = nn.Embedding(n_levels, d_model) if level_embedding else None
        self.side = nn.Embedding(n_sides, d_model) if level_embedding and n_sides > 1 else None
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, len(SEVERITIES))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("prior_logit", torch.zeros(n_levels, n_sides, len(SEVERITIES)))
        self.register_buffer("log_correction", torch.zeros(len(SEVERITIES)))
        self.d_model, self.n_levels, self.n_sides = d_model, n_levels, n_sides

    def features(self, crops: torch.Tensor, level: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """``(B, N, S, S)`` -> ``(B, d_model)``: mean over slices of the encoded sequence."""
        b, n, h, w = crops.shape
        if n > MAX_SLICES:
            raise ValueError(f"crops of {n} slices exceed the positional encoding ({MAX_SLICES})")
        if self.slices_as_channels:  # 2.5D: one image of N channels, a sequence of one token
            if n != self.slices_as_channels:
                raise ValueError(f"crops of {n} slices, but the backbone takes {self.slices_as_channels} channels")
            x = self.project(self.backbone(crops))[:, None] + self.position[:1]
        else:  # time-distributed: the backbone on every slice, attention across them
            per_slice = self.backbone(crops.reshape(b * n, 1, h, w))
            x = self.project(per_slice.reshape(b, n, -1)) + self.position[:n]
        if self.level is not None:
            x = x + self.level(level)[:, None, :]
        if self.side is not None:
            x = x + self.side(side)[:, None, :]
        return self.norm(self.encoder(x).mean(dim=1))

    def logits(self, features: torch.Tensor, level: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """``(B, d_model)`` features -> ``(B, 3)`` logits: prior logit + head; in eval mode, corrected for
        oversampling."""
        out = self.head(features).float() + self.prior_logit[level, side]
        return out if self.training else out + self.log_correction

    def forward(self, crops: torch.Tensor, level: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(crops, level, side), level, side)


def grid_outputs(grader: SliceSequenceGrader, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A study grid ``(B, L, K, N, S, S)`` -> features ``(B, L, K, d_model)`` and logits ``(B, L, K, 3)``."""
    b, levels, sides, n, h, w = crops.shape
    level = torch.arange(levels, device=crops.device).repeat_interleave(sides).repeat(b)
    side = torch.arange(sides, device=crops.device).repeat(b * levels)
    flat = crops.reshape(b * levels * sides, n, h, w)
    features = grader.features(flat, level, side)
    logits = grader.logits(features, level, side)
    return features.reshape(b, levels, sides, -1), logits.reshape(b, levels, sides, -1)
