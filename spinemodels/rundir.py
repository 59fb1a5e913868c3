"""A run directory of a built-in (or registered) task: its config read through the catalog, the start of a
training run, one fold's network. The files themselves: ``spinemodels.runfiles``."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from spinemodels.catalog import get_task
from spinemodels.config import TrainConfig, save_config
from spinemodels.errors import ConfigError, RunDirError
from spinemodels.runfiles import BEST_FILE, RunFiles, load_checkpoint, load_weights


@dataclass(frozen=True)
class RunDir(RunFiles):
    """Files of one training run (all folds of one config), its config validated against the catalog."""

    def config(self) -> TrainConfig:
        """The run's resolved config."""
        return self.read_config(get_task)

    def write_start(self, config: TrainConfig, folds: pd.DataFrame) -> None:
        """Create the directory with its config and split; refuse a directory of another config."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.exists():
            old = self.config().to_dict()
            new = config.to_dict()
            changed = [
                f"{section}.{key}"
                for section in ("model", "data", "optim", "train")
                for key in new[section]
                if old[section].get(key) != new[section][key] and key not in ("epochs", "folds", "num_workers")
            ]
            if old["task"] != new["task"]:
                changed.insert(0, "task")
            if changed:
                raise ConfigError(
                    f"{self.path} holds a run of another config (differs in {', '.join(changed)}); "
                    "choose a new --out directory"
                )
        save_config(config, self.config_path)
        if self.folds_path.is_file():
            if not self.folds().equals(folds.astype({"study_id": str}).reset_index(drop=True)):
                raise RunDirError(
                    f"{self.folds_path} differs from the split of this data; train into a new --out directory"
                )
        else:
            folds.to_csv(self.folds_path, index=False)

    def load_network(self, fold: int, device: torch.device | str = "cpu"):
        """``(task, network)`` of one fold with its best weights, in eval mode."""
        config = self.config()
        path = self.fold_dir(fold) / BEST_FILE
        if not path.is_file():
            raise RunDirError(f"{path} not found; trained folds of {self.path}: {self.trained_folds()}")
        task = get_task(config.task)(config)
        network = task.build_network(pretrained=False)
        load_weights(network, load_checkpoint(path, device)["model"], path)
        return task, network.to(device).eval()
