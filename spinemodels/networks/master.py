"""The master model: per disc level, the features of all five conditions joined to grade all five.

Three trained graders (spinal, foraminal, subarticular) give pooled features for every (level, side), and an
optional second view of the spinal canal (``spinal_axial``, Axial T2) one more slot per level. A
condition whose crop is missing (no point, or the study lacks its series) gets a learned "missing" vector
instead, so the other conditions at that level still grade it. A small MLP per level maps the five joined
feature vectors to a correction added to each grader's own logits (zero-initialised: training starts
from the graders' predictions; a condition seen in two views starts from the mean of both views' logits).
"""

from __future__ import annotations

import torch
from torch import nn

from spinedata.conditions import CONDITION_GROUPS, CROSS_VIEWS, SCORED_GROUPS
from spinedata.constants import CONDITIONS, SEVERITIES
from spinemodels.networks.grader import SliceSequenceGrader, grid_outputs

GROUP_ORDER: tuple[str, ...] = SCORED_GROUPS
"""Groups in the order their sides fill the five condition slots (the order of CONDITIONS)."""
EXTRA_VIEWS: dict[str, int] = {name: CONDITION_GROUPS[name].slots.start for name in CROSS_VIEWS}
"""Optional graders of a condition on a second series (group name -> the condition slot they also grade)."""


class MasterGrader(nn.Module):
    """``batch`` with ``image_<group>`` ``(B, 5, K, N, S, S)`` and ``present_<group>`` ``(B, 5, K)`` for the
    three groups -> ``(B, 5, 5, 3)`` logits (level, condition in CONDITIONS order, class)."""

    def __init__(self, graders: dict[str, SliceSequenceGrader], *, hidden: int = 128, dropout: float = 0.2,
                 freeze_graders: bool = True):
        super().__init__()
        if not set(GROUP_ORDER) <= set(graders) or set(graders) - set(GROUP_ORDER) - set(EXTRA_VIEWS):
            raise ValueError(f"the master model needs graders for {GROUP_ORDER} (and may take {sorted(EXTRA_VIEWS)}), "
                             f"got {sorted(graders)}")
        self.views = [v for v in EXTRA_VIEWS if v in graders]
        self.graders = nn.ModuleDict(graders)
        self.freeze_graders = freeze_graders
        if freeze_graders:
            for parameter in self.graders.parameters():
                parameter.requires_grad_(False)
        self.project = nn.ModuleDict({g: nn.Linear(graders[g].d_model, hidden) for g in GROUP_ORDER})
        self.project.update({v: nn.Linear(graders[v].d_model, hidden) for v in self.views})
        slots = len(CONDITIONS) + len(self.views)
        self.missing = nn.Parameter(torch.zeros(slots, hidden))
        self.mlp = nn.Sequential(nn.LayerNorm(slots * hidden), nn.Dropout(dropout),
                                 nn.Linear(slots * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
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
        for group in (*GROUP_ORDER, *self.views):
            grader = self.graders[group]
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_graders):
                features, logits = grid_outputs(grader, batch[f"image_{group}"])  # (B, 5, K, d), (B, 5, K, 3)
            slots.append(self.project[group](features))
            own_logits.append(logits.float())
            present.append(batch[f"present_{group}"].bool())
        x = torch.cat(slots, dim=2)  # (B, 5, 5 + views, hidden)
        mask = torch.cat(present, dim=2)  # (B, 5, 5 + views)
        x = torch.where(mask[..., None], x, self.missing.to(x.dtype))
        b, levels, n_slots, hidden = x.shape
        correction = self.mlp(x.reshape(b, levels, n_slots * hidden)).reshape(b, levels, len(CONDITIONS), -1)
        logits = torch.cat(own_logits, dim=2).masked_fill(~mask[..., None], 0.0)  # (B, 5, 5 + views, 3)
        base, seen = logits[:, :, : len(CONDITIONS)].clone(), mask[:, :, : len(CONDITIONS)].float()
        for j, view in enumerate(self.views):  # a condition seen on two series starts from the mean of both
            slot, k = EXTRA_VIEWS[view], len(CONDITIONS) + j
            base[:, :, slot] = base[:, :, slot] + logits[:, :, k]
            seen[:, :, slot] = seen[:, :, slot] + mask[:, :, k].float()
        return base / seen.clamp_min(1.0)[..., None] + correction.float()
