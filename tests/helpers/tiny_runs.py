"""Tiny training configs (seconds on a CPU) and runs of them on the fake datasets of ``spinemodels_fakes``."""

from __future__ import annotations

from pathlib import Path

TINY_TRAIN = {"epochs": 2, "batch_size": 3, "n_folds": 2, "folds": [0], "num_workers": 0, "patience": 0}
TINY = {
    "slice_finder": {
        "task": "slice_finder",
        "model": {"backbone": "resnet10t", "pretrained": False, "d_model": 16, "n_layers": 1, "n_heads": 2},
        "data": {"image_size": 32, "fov_mm": 40.0, "n_slices": 14, "cache_mb": 64},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "train": TINY_TRAIN,
    },
    "keypoints": {
        "task": "keypoints",
        "model": {"encoder": "resnet18", "pretrained": False, "encoder_depth": 3, "decoder_channels": [32, 16, 8]},
        "data": {"image_size": 32, "fov_mm": 40.0, "channels": 3, "sigma_px": 1.5, "cache_mb": 64},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "train": TINY_TRAIN,
    },
}
"""The stage-1 tasks' tiny configs, by task name."""


def tiny_grader_config(task: str, **train_overrides) -> dict:
    """A tiny config of the grading task ``task`` (24 px crops of 30 mm over 3 slices, one epoch of fold 0)."""
    return {
        "task": task,
        "model": {"backbone": "resnet10t", "pretrained": False, "d_model": 16, "n_layers": 1, "n_heads": 2},
        "data": {"image_size": 24, "side_mm": 30.0, "n_slices": 3, "cache_mb": 64},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "train": {"epochs": 1, "batch_size": 3, "n_folds": 2, "folds": [0], "num_workers": 0, "patience": 0,
                  **train_overrides},
    }


def train_runs(configs: dict[str, dict], dataset, root: Path, overrides: list[str] | None = None) -> dict[str, Path]:
    """Train each config (folder name -> config dict, with ``overrides``) on ``dataset`` into ``root/<name>``;
    folder name -> run directory."""
    from spinemodels.catalog import config_from_dict
    from spinemodels.training import train

    return {name: train(config_from_dict(config, overrides or []), dataset, root / name, progress=False).path
            for name, config in configs.items()}
