"""Trained runs loaded for inference: every trained fold's network, and which fold held each study out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from spinemodels.errors import RunDirError
from spinemodels.rundir import RunDir

__all__ = ["FoldModels", "RunDir", "RunDirError"]


@dataclass
class FoldModels:
    """The trained folds of one run: networks, config and the fold of each study."""

    run: RunDir
    task: Any
    networks: dict[int, torch.nn.Module]
    study_fold: dict[str, int]

    @classmethod
    def load(cls, run: RunDir, device: torch.device) -> FoldModels:
        folds = run.trained_folds()
        if not folds:
            raise RunDirError(f"{run.path} has no trained fold (no fold_*/best.pt)")
        networks, task = {}, None
        for k in folds:
            task, networks[k] = run.load_network(k, device)
        table = run.folds()
        return cls(run, task, networks, dict(zip(table["study_id"].astype(str), table["fold"], strict=True)))

    def select(self, study_id: str, oof: bool) -> list[int]:
        """Folds to average for a study: all, or (oof) only the one that held it out (empty if none did)."""
        if not oof:
            return list(self.networks)
        fold = self.study_fold.get(study_id)
        return [fold] if fold in self.networks else []
