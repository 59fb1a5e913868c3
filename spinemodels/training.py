"""``spine train``: folds, loaders, optimiser and schedule around the loop in ``trainer.py``."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

import spinedata
from spinemodels import distributed
from spinemodels.catalog import get_task
from spinemodels.config import OptimConfig, TrainConfig
from spinemodels.data.sampling import EpochSampler, ShardSampler
from spinemodels.errors import ConfigError, RunDirError
from spinemodels.folds import assign_folds
from spinemodels.memory import preflight
from spinemodels.registry import Task
from spinemodels.rundir import RunDir
from spinemodels.runfiles import (
    BEST_FILE,
    LAST_FILE,
    METRICS_FILE,
    OOF_FILE,
    load_checkpoint,
    load_weights,
    one_line,
)
from spinemodels.trainer import (
    BestCheckpoint,
    EarlyStopping,
    LastCheckpoint,
    LoopState,
    MetricsCSV,
    RichProgress,
    fit,
    make_ema,
    validate,
)


def open_source(data: Any):
    """A store path -> ``spinedata.open_dataset(path)``; an already opened dataset is returned as is."""
    if isinstance(data, str | Path):
        return spinedata.open_dataset(str(data))
    return data


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loader(dataset, batch_size: int, *, shuffle: bool, num_workers: int, seed: int,
                info: distributed.DistInfo) -> DataLoader:
    """A DataLoader whose samples are keyed by (index, seed, epoch): the same batches and augmentation
    whatever the number of workers. Over DDP processes, training batches (``shuffle``) are sharded with
    padding (every process steps as often); evaluation (no ``shuffle``) takes one contiguous block per
    process, each sample once (``validate`` puts the blocks back together)."""
    if shuffle:
        sampler = EpochSampler(len(dataset), seed=seed, shuffle=True, rank=info.rank, world_size=info.world_size)
    else:
        sampler = ShardSampler(len(dataset), seed=seed, rank=info.rank, world_size=info.world_size)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        persistent_workers=num_workers > 0, pin_memory=info.device.type == "cuda", drop_last=False,
    )


def lr_factor(epoch: int, optim: OptimConfig, epochs: int) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based)."""
    if epoch < optim.warmup_epochs:
        return 0.1 + 0.9 * epoch / optim.warmup_epochs
    if optim.schedule == "step":
        return optim.gamma ** sum(epoch >= m for m in optim.milestones)
    if optim.schedule == "cosine":
        span = max(epochs - optim.warmup_epochs, 1)
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - optim.warmup_epochs) / span))
    return 1.0


def make_optimizer(model: torch.nn.Module, optim: OptimConfig, epochs: int):
    """Optimiser and per-epoch LambdaLR schedule from the config."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optim.name == "adamw":
        optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=optim.lr, weight_decay=optim.weight_decay, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, optim, epochs))
    return optimizer, scheduler


def folds_to_train(config: TrainConfig, fold: int | None) -> list[int]:
    """``--fold K`` if given, else ``train.folds``, else every fold."""
    n = config.train.n_folds
    chosen = [fold] if fold is not None else (config.train.folds or list(range(n)))
    bad = [k for k in chosen if not 0 <= k < n]
    if bad:
        raise ConfigError(f"fold {bad[0]} does not exist; folds are 0..{n - 1} (train.n_folds={n})")
    return chosen


def train(config: TrainConfig, data: Any, out: str | Path, *, fold: int | None = None, resume: bool = False,
          progress: bool = True, device: str | None = None) -> RunDir:
    """Train the config's model on the store ``data`` into run directory ``out``; one model per fold.

    ``data`` is a store path (workers open it themselves) or an opened dataset (then use
    ``train.num_workers: 0`` unless it pickles). ``resume`` continues every fold from its ``last.pt``.
    """
    info = distributed.setup(device)
    try:
        dataset = open_source(data)
        task = get_task(config.task)(config)
        folds = assign_folds(task.study_strata(dataset), config.train.n_folds, config.train.seed)
        run = RunDir(out)
        if info.is_main:
            run.write_start(config, folds)
        distributed.barrier(info)
        source = str(data) if isinstance(data, str | Path) else dataset
        for k in folds_to_train(config, fold):
            _train_fold(task, dataset, source, run, folds, k, info, resume=resume, progress=progress)
        if info.is_main:
            task.after_run(run)
        return run
    finally:
        distributed.teardown(info)


LAST_KEYS = ("model", "optimizer", "scheduler", "epoch", "step", "best_val_loss", "bad_epochs", "stop", "torch_rng")
"""Keys a ``last.pt`` must have to resume from."""


def resume_from(state: LoopState, path: Path, device: torch.device) -> None:
    """Restore ``state`` from the ``last.pt`` at ``path``, loaded as plain data (``load_checkpoint``: a planted
    file cannot run code); ``RunDirError`` (one line) for a file that is not a checkpoint of this run."""
    saved = load_checkpoint(path, device, required=LAST_KEYS)
    try:
        state.restore(saved)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
        raise RunDirError(f"{path} does not fit this run, cannot resume from it ({one_line(error)})") from error


def _train_fold(task: Task, dataset, source, run: RunDir, folds, k: int, info: distributed.DistInfo, *,
                resume: bool, progress: bool) -> None:
    config = task.config
    fold_dir = run.fold_dir(k)
    last_path = fold_dir / LAST_FILE
    if last_path.is_file() and not resume:
        raise RunDirError(
            f"{fold_dir} already holds a training run; pass --resume to continue it or choose another --out"
        )
    if info.is_main:
        fold_dir.mkdir(parents=True, exist_ok=True)
    seed = config.train.seed + 1000 * k
    seed_everything(seed)
    train_ids = folds.loc[folds["fold"] != k, "study_id"].tolist()
    val_ids = folds.loc[folds["fold"] == k, "study_id"].tolist()
    train_set = task.build_dataset(dataset, source, train_ids, train=True)
    train_loader = make_loader(train_set, config.train.batch_size, shuffle=True,
                               num_workers=config.train.num_workers, seed=seed, info=info)
    val_loader = make_loader(task.build_dataset(dataset, source, val_ids, train=False), config.train.batch_size,
                             shuffle=False, num_workers=config.train.num_workers, seed=seed, info=info)
    network = task.build_network()
    task.prepare_network(network, train_set)
    network = network.to(info.device)
    on_cuda = info.device.type == "cuda"
    channels_last = config.train.channels_last and on_cuda
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    amp = config.train.amp and on_cuda
    optimizer, scheduler = make_optimizer(network, config.optim, config.train.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and not torch.cuda.is_bf16_supported()) if on_cuda \
        else torch.amp.GradScaler("cpu", enabled=False)
    state = LoopState(model=distributed.wrap(network, info), optimizer=optimizer, scheduler=scheduler,
                      scaler=scaler, ema=make_ema(network, config.optim.ema_decay))
    if resume and last_path.is_file():
        resume_from(state, last_path, info.device)
    preflight(task, network, optimizer, train_loader, info.device, amp=amp, channels_last=channels_last)
    write = info.is_main
    callbacks = (
        BestCheckpoint(fold_dir / BEST_FILE, write, keep=config.train.checkpoint),
        EarlyStopping(config.train.patience),
        LastCheckpoint(last_path, write),
        MetricsCSV(fold_dir / METRICS_FILE, write),
        RichProgress(f"{config.task} fold {k}", enabled=progress and write, log_every=config.train.log_every),
    )
    fit(task, state, train_loader, val_loader, epochs=config.train.epochs, device=info.device, amp=amp,
        channels_last=channels_last, grad_clip=config.optim.grad_clip, callbacks=callbacks, info=info)
    best = load_checkpoint(fold_dir / BEST_FILE) if write else None  # other nodes may not see rank 0's files
    load_weights(network, distributed.from_main(best, info)["model"], fold_dir / BEST_FILE)
    _, predictions = validate(task, network, val_loader, info.device, amp, channels_last, info)
    if not write:
        return
    predictions.to_csv(fold_dir / OOF_FILE, index=False)
    task.after_fit(dataset, train_ids, fold_dir)
