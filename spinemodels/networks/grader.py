"""Stage-2 graders: a time-distributed CNN over the slices of a crop, a transformer across slices, 3 classes.

Input crops are ``(B, L, K, N, S, S)``: L levels, K sides (1 for spinal, 2 for foraminal and subarticular),
N slices of S x S pixels. Levels and sides are folded into the batch; a learned level embedding tells the
sequence encoder which disc it looks at (severity priors differ strongly between L1/L2 and L4/L5).
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
    """``(B, L, K, N, S, S)`` crops -> ``(B, L, K, 3)`` logits (Normal/Mild, Moderate, Severe).

    ``features(x)`` gives the pooled ``(B, L, K, d_model)`` features (the master model joins them).
    """

    def __init__(self, backbone: str, *, pretrained: bool, d_model: int = 256, n_layers: int = 4,
                 n_heads: int = 8, dropout: float = 0.1, n_levels: int = len(LEVELS), level_embedding: bool = True,
                 grad_checkpointing: bool = False):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained=pretrained, in_chans=1)
        if grad_checkpointing:  # timm: recompute activations block by block in backward
            self.backbone.set_grad_checkpointing(True)
        self.project = nn.Linear(self.backbone.num_features, d_model)
        self.register_buffer("position", sinusoidal_encoding(MAX_SLICES, d_model), persistent=False)
        self.level = nn.Embedding(n_levels, d_model) if level_embedding else None
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, len(SEVERITIES))
        self.d_model = d_model

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """``(B, L, K, N, S, S)`` -> ``(B, L, K, d_model)``: mean over slices of the encoded sequence."""
        b, levels, sides, n, h, w = crops.shape
        if n > MAX_SLICES:
            raise ValueError(f"crops of {n} slices exceed the positional encoding ({MAX_SLICES})")
        per_slice = self.backbone(crops.reshape(b * levels * sides * n, 1, h, w))
        x = self.project(per_slice.reshape(b * levels * sides, n, -1)) + self.position[:n]
        if self.level is not None:
            level_ids = torch.arange(levels, device=crops.device).repeat_interleave(sides).repeat(b)
            x = x + self.level(level_ids)[:, None, :]
        x = self.encoder(x)
        return self.norm(x.mean(dim=1)).reshape(b, levels, sides, -1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(crops))
