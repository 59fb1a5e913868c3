"""Trained runs loaded for inference: every trained fold's network, and which fold held each study out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spinemodels.errors import RunDirError
from spinemodels.rundir import RunDir
from spinemodels.runfiles import CONFIG_FILE

__all__ = ["FoldModels", "RunDir", "RunDirError", "runs_for"]


def runs_for(paths: list[str | Path], tasks: tuple[str, ...], command: str,
             error: type[Exception] = RunDirError) -> list[tuple[RunDir, str]]:
    """``(run, task)`` of each run ``command`` takes: a run directory given itself must be of one of ``tasks``
    (``error`` otherwise); a folder of run directories (e.g. ``runs/``) gives those of ``tasks`` among its
    subfolders and leaves the others (a grader run to ``locate``). Order: as given, a folder's runs by name."""
    out: list[tuple[RunDir, str]] = []
    for given in paths:
        path = Path(given)
        if not (path / CONFIG_FILE).is_file() and path.is_dir():
            inside = sorted(p for p in path.iterdir() if (p / CONFIG_FILE).is_file())
            if not inside:
                raise RunDirError(f"{path} is neither a run directory nor a folder of runs (no {CONFIG_FILE} in it "
                                  "or its subfolders); train one with `spine train`")
            out += [(run, task) for run in map(RunDir, inside) if (task := run.config().task) in tasks]
            continue
        run = RunDir(path)
        task = run.config().task
        if task not in tasks:
            raise error(f"{path} is a {task!r} run; {command} takes {', '.join(sorted(tasks))} runs "
                              "(or a folder of runs, from which it takes those)")
        out.append((run, task))
    return out


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
