"""The slice finder: a time-distributed CNN (2D backbone per slice -> positional encoding -> transformer
across slices -> per-slice logits for each level)."""

from __future__ import annotations

import math

import torch
from torch import nn

from spinemodels.networks.backbones import create_backbone, feature_size


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal positional encoding (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(position * freq)
    out[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return out


class SliceFinder(nn.Module):
    """(B, N, H, W) slices + (B, N) mask of real slices -> (B, N, levels) logits.

    Softmax over the N slices of one level gives the probability that each slice is the labelled one.
    """

    def __init__(self, backbone: str, *, pretrained: bool, d_model: int = 256, n_layers: int = 4,
                 n_heads: int = 8, dropout: float = 0.1, n_levels: int = 5, max_slices: int = 128,
                 grad_checkpointing: bool = False):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained=pretrained, in_chans=1)
        if grad_checkpointing:  # timm: recompute activations block by block in backward
            self.backbone.set_grad_checkpointing(True)
        self.project = nn.Linear(feature_size(self.backbone), d_model)
        self.register_buffer("position", sinusoidal_encoding(max_slices, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_levels)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, h, w = image.shape
        features = self.backbone(image.reshape(b * n, 1, h, w)).reshape(b, n, -1)
        x = self.project(features) + self.position[:n]
        padding = None if mask is None else ~mask.bool()
        x = self.encoder(x, src_key_padding_mask=padding)
        return self.head(x)
