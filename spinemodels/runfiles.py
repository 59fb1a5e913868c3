"""The files of a run directory, and checkpoints read as plain data: what training writes and inference reads.


Layout::

    RUN_DIR/
      config.yaml          the resolved config (every value, after overrides)
      folds.csv            study_id, fold, stratum: the split by study
      fold_<k>/
        metrics.csv        one row per epoch: epoch, train_loss, val_loss, lr, seconds, samples_per_s, ...
        best.pt            weights with the lowest validation loss (+ epoch, val_loss)
        last.pt            weights, optimiser, scheduler, counters and random states after the last epoch (for
                           resuming); both .pt files hold plain data and load with weights_only=True
        oof.csv            predictions of best.pt on the fold's validation studies
        ...                task extras (e.g. offsets.csv of the keypoint task)
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from spinemodels.config import TaskLookup, TrainConfig, read_config
from spinemodels.errors import RunDirError

CONFIG_FILE = "config.yaml"
FOLDS_FILE = "folds.csv"
METRICS_FILE = "metrics.csv"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
OOF_FILE = "oof.csv"
_FOLD_DIR = re.compile(r"^fold_(\d+)$")


_UNREADABLE = (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError, IndexError, TypeError,
               AttributeError, struct.error)
"""What ``torch.load`` raises for a file that is not a checkpoint of plain data (seen: a planted object is an
``UnpicklingError``; garbled or truncated files raise any of these)."""


def load_checkpoint(path: str | os.PathLike, map_location: torch.device | str = "cpu",
                    required: tuple[str, ...] = ("model",)) -> dict:
    """A checkpoint (``best.pt``, ``last.pt``) as plain data: ``torch.load(weights_only=True)`` builds only
    tensors, numbers, strings, lists, tuples and dicts, so a planted file cannot run code. ``RunDirError``
    (one line) for a file that is not such a dict with the ``required`` keys."""
    try:
        with warnings.catch_warnings():  # a plain pickle (not torch.save's) warns about its protocol first
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            saved = torch.load(path, map_location=map_location, weights_only=True)
    except _UNREADABLE as error:
        raise RunDirError(
            f"refused to load {path}: not a checkpoint of plain tensors and numbers ({one_line(error)})"
        ) from error
    missing = [key for key in required if not isinstance(saved, dict) or key not in saved]
    if missing:
        raise RunDirError(f"{path} is not a checkpoint of this project (no {', '.join(missing)})")
    return saved


def load_weights(network: torch.nn.Module, weights: dict, path: str | os.PathLike) -> None:
    """``network.load_state_dict(weights)``; ``RunDirError`` (one line, naming ``path``) when they do not fit."""
    try:
        network.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise RunDirError(f"the weights in {path} do not fit this run's network ({one_line(error)})") from error


_BOILERPLATE = ("Weights only load failed", "Check the documentation", "Please file an issue")
"""Lines of torch's weights-only message that say nothing about the file."""


def one_line(error: Exception, limit: int = 200) -> str:
    """An exception's type and message on one line (torch's advice lines left out, at most ``limit`` characters)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = "; ".join(line for line in lines if not line.startswith(_BOILERPLATE))
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class RunFiles:
    """Files of one training run (all folds of one config); ``read_config`` takes how task names become tasks
    (``spinemodels.rundir.RunDir`` passes the catalog's)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def folds_path(self) -> Path:
        return self.path / FOLDS_FILE

    def fold_dir(self, fold: int) -> Path:
        return self.path / f"fold_{fold}"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def read_config(self, get_task: TaskLookup) -> TrainConfig:
        """The run's resolved config, its task found by ``get_task``."""
        if not self.exists():
            raise RunDirError(f"{self.path} is not a run directory (no {CONFIG_FILE}); train one with `spine train`")
        return read_config(self.config_path, (), get_task)

    def folds(self) -> pd.DataFrame:
        """The fold split: study_id (str), fold, stratum."""
        if not self.folds_path.is_file():
            raise RunDirError(f"{self.path} has no {FOLDS_FILE}; was training interrupted before it began?")
        return pd.read_csv(self.folds_path, dtype={"study_id": str})

    def trained_folds(self) -> list[int]:
        """Folds with a best checkpoint, ascending."""
        found = []
        for child in self.path.glob("fold_*"):
            match = _FOLD_DIR.match(child.name)
            if match and (child / BEST_FILE).is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def metrics(self, fold: int) -> pd.DataFrame:
        return pd.read_csv(self.fold_dir(fold) / METRICS_FILE)

    def oof(self) -> pd.DataFrame:
        """Out-of-fold predictions of every trained fold, with a fold column."""
        frames = []
        for fold in self.trained_folds():
            path = self.fold_dir(fold) / OOF_FILE
            if path.is_file():
                frames.append(pd.read_csv(path, dtype={"study_id": str}).assign(fold=fold))
        if not frames:
            raise RunDirError(f"{self.path} has no {OOF_FILE} in any fold")
        return pd.concat(frames, ignore_index=True)
