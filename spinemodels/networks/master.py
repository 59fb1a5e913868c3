"""The master model: per disc level, the features of all five conditions joined to grade all five.

Three trained graders (spinal, foraminal, subarticular) give pooled features for every (level, side). A
condition whose crop is missing (no point, or the study lacks its series) gets a learned "missing" vector
instead, so the other conditions at that level still grade it. A small MLP per level maps the five joined
feature vectors to a correction added to each grader's own logits (zero-initialised: training starts
from the graders' predictions).
"""

from __future__ import annotations

import torch
from torch import nn

from spinedata.constants import CONDITIONS, SEVERITIES
from spinemodels.networks.grader import SliceSequenceGrader, grid_outputs

GROUP_ORDER: tuple[str, ...] = ("spinal", "foraminal", "subarticular")
"""Groups in the order their sides fill the five condition slots (the order of CONDITIONS)."""


class MasterGrader(nn.Module):
    """``batch`` with ``image_<group>`` ``(B, 5, K, N, S, S)`` and ``present_<group>`` ``(B, 5, K)`` for the
    three groups -> ``(B, 5, 5, 3)`` logits (level, condition in CONDITIONS order, class)."""

    def __init__(self, graders: dict[str, SliceSequenceGrader], *, hidden: int = 128, dropout: float = 0.2,
                 freeze_graders: bool = True):
        super().__init__()
        if set(graders) != set(GROUP_ORDER):
            raise ValueError(f"the master model needs graders for {GROUP_ORDER}, got {sorted(graders)}")
        self.graders = nn.ModuleDict(graders)
        self.freeze_graders = freeze_graders
        if freeze_graders:
            for parameter in self.graders.parameters():
                parameter.requires_grad_(False)
        self.project = nn.ModuleDict({g: nn.Linear(graders[g].d_model, hidden) for g in GROUP_ORDER})
        self.missing = nn.Parameter(torch.zeros(len(CONDITIONS), hidden))
        self.mlp = nn.Sequential(nn.LayerNorm(len(CONDITIONS) * hidden), nn.Dropout(dropout),
                                 nn.Linear(len(CONDITIONS) * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, len(CONDITIONS) * len(SEVERITIES)))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_graders:
            self.graders.eval()  # frozen graders keep their normalisation statistics and no dropout
        return self

    def forward(self, batch: dict) -> torch.Tensor:
        slots, own_logits, present = [], [], []
        for group in GROUP_ORDER:
            grader = self.graders[group]
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_graders):
                features, logits = grid_outputs(grader, batch[f"image_{group}"])  # (B, 5, K, d), (B, 5, K, 3)
            slots.append(self.project[group](features))
            own_logits.append(logits)
            present.append(batch[f"present_{group}"])
        x = torch.cat(slots, dim=2)  # (B, 5, 5, hidden)
        mask = torch.cat(present, dim=2).bool()  # (B, 5, 5)
        x = torch.where(mask[..., None], x, self.missing.to(x.dtype))
        b, levels, conditions, hidden = x.shape
        correction = self.mlp(x.reshape(b, levels, conditions * hidden)).reshape(b, levels, conditions, -1)
        base = torch.cat(own_logits, dim=2).masked_fill(~mask[..., None], 0.0)
        return base.float() + correction.float()
