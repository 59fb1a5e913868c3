"""One readable training loop; progress, checkpoints, early stopping and the metrics CSV are callbacks."""

from __future__ import annotations

import contextlib
import csv
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from spinemodels.distributed import DistInfo, gather_evaluation, unwrap


@dataclass
class LoopState:
    """Everything the loop and its callbacks share; ``epoch`` counts finished epochs."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    epoch: int = 0
    step: int = 0
    best_val_loss: float = math.inf
    bad_epochs: int = 0
    stop: bool = False
    improved: bool = False
    history: list[dict] = field(default_factory=list)
    ema: torch.optim.swa_utils.AveragedModel | None = None
    """An exponential moving average of the (unwrapped) model's weights and buffers, updated after every
    optimiser step (``make_ema``); when present, validation and ``best.pt`` use it."""

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated and kept: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self) -> dict:
        """What ``last.pt`` holds to resume."""
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "best_val_loss": self.best_val_loss,
            "bad_epochs": self.bad_epochs,
            "stop": self.stop,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": numpy_rng_state(),
            "python_rng": python_rng_state(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def restore(self, saved: dict) -> None:
        """Continue from a ``last.pt`` dict (one written before the NumPy and Python states were kept
        restores the torch state only)."""
        unwrap(self.model).load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.epoch, self.step = saved["epoch"], saved["step"]
        self.best_val_loss, self.bad_epochs, self.stop = saved["best_val_loss"], saved["bad_epochs"], saved["stop"]
        torch.set_rng_state(saved["torch_rng"].cpu())  # map_location may have moved it to the GPU
        if saved.get("numpy_rng") is not None:
            set_numpy_rng_state(saved["numpy_rng"])
        if saved.get("python_rng") is not None:
            set_python_rng_state(saved["python_rng"])
        if self.ema is not None and saved.get("ema") is not None:  # the run dir's config fixes ema_decay
            self.ema.load_state_dict(saved["ema"])


def numpy_rng_state() -> dict:
    """NumPy's global random state as plain data (lists and numbers: ``last.pt`` loads with
    ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {"kind": str(kind), "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian)}


def set_numpy_rng_state(state: dict) -> None:
    """Inverse of ``numpy_rng_state``."""
    keys = np.asarray(state["keys"], dtype=np.uint32)
    np.random.set_state((state["kind"], keys, int(state["pos"]), int(state["has_gauss"]),
                         float(state["cached_gaussian"])))


def python_rng_state() -> dict:
    """Python's ``random`` state as plain data (a list of ints and numbers)."""
    version, internal, gauss_next = random.getstate()
    return {"version": int(version), "internal": list(internal), "gauss_next": gauss_next}


def set_python_rng_state(state: dict) -> None:
    """Inverse of ``python_rng_state``."""
    random.setstate((int(state["version"]), tuple(int(v) for v in state["internal"]), state["gauss_next"]))


def make_ema(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """A moving average of ``model``'s weights and buffers (``decay`` per step, in [0, 1)); None for 0."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
    if decay == 0.0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class Callback:
    """Hooks of the loop; override what you need."""

    def on_fit_start(self, state: LoopState, n_batches: int) -> None: ...
    def on_step(self, state: LoopState, loss: float, n_samples: int) -> None: ...
    def on_epoch_end(self, state: LoopState, row: dict, predictions: pd.DataFrame) -> None: ...
    def on_fit_end(self, state: LoopState) -> None: ...


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; 4D float tensors optionally channels-last."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


def autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA when asked (bfloat16 where supported); float32 everywhere else."""
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.no_grad()
def validate(task, model, loader, device, amp: bool, channels_last: bool,
             info: DistInfo | None = None) -> tuple[float, pd.DataFrame]:
    """Mean validation loss (per sample) and the task's predictions, with the unwrapped model in eval mode.

    Under DDP (``info.enabled``) each process evaluates its share of the loader (``ShardSampler``); the
    loss sums and the predictions are gathered, so every process returns the loss and the predictions
    of the whole validation set, in the single-process order."""
    net = unwrap(model)
    net.eval()
    total, count, rows = 0.0, 0, []
    for batch in loader:
        batch = to_device(batch, device, channels_last)
        with autocast(device, amp):
            outputs = task.forward(net, batch)
            loss = task.loss(outputs, batch)
        n = task.batch_size_of(batch)
        total += float(loss) * n
        count += n
        rows.extend(task.predict(outputs, batch))
    if info is not None and info.enabled:
        total, count, rows = gather_evaluation(total, count, rows, info)
    return total / max(count, 1), pd.DataFrame(rows)


def fit(task, state: LoopState, train_loader, val_loader, *, epochs: int, device: torch.device,
        amp: bool = False, channels_last: bool = False, grad_clip: float = 0.0,
        callbacks: tuple[Callback, ...] = (), info: DistInfo | None = None) -> LoopState:
    """Train ``state.model`` from ``state.epoch`` up to ``epochs`` (or until a callback sets ``stop``)."""
    for cb in callbacks:
        cb.on_fit_start(state, len(train_loader))
    while state.epoch < epochs and not state.stop:
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(state.epoch)
        state.model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        for batch in train_loader:
            batch = to_device(batch, device, channels_last)
            with autocast(device, amp):
                loss = task.loss(task.forward(state.model, batch), batch)
            state.optimizer.zero_grad(set_to_none=True)
            state.scaler.scale(loss).backward()
            if grad_clip > 0:
                state.scaler.unscale_(state.optimizer)
                torch.nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
            state.scaler.step(state.optimizer)
            state.scaler.update()
            if state.ema is not None:
                state.ema.update_parameters(unwrap(state.model))
            n, value = task.batch_size_of(batch), loss.detach().item()
            total, count, state.step = total + value * n, count + n, state.step + 1
            for cb in callbacks:
                cb.on_step(state, value, n)
        seconds = time.perf_counter() - start
        lr = state.optimizer.param_groups[0]["lr"]
        state.scheduler.step()
        val_loss, predictions = validate(task, state.evaluated, val_loader, device, amp, channels_last, info)
        state.epoch += 1
        row = {"epoch": state.epoch, "train_loss": total / max(count, 1), "val_loss": val_loss, "lr": lr,
               "seconds": round(seconds, 3), "samples_per_s": round(count / max(seconds, 1e-9), 3),
               **task.evaluate(predictions)}
        state.history.append(row)
        for cb in callbacks:
            cb.on_epoch_end(state, row, predictions)
    for cb in callbacks:
        cb.on_fit_end(state)
    return state


class BestCheckpoint(Callback):
    """Keep the weights inference uses in ``best.pt``: those with the lowest validation loss (``keep="best"``)
    or the last epoch's (``keep="last"``: a fixed schedule, no choice made on a small validation fold).
    Counts epochs without progress either way."""

    def __init__(self, path: Path, write: bool = True, keep: str = "best"):
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        self.path, self.write, self.keep = Path(path), write, keep

    def on_epoch_end(self, state, row, predictions):
        state.improved = row["val_loss"] < state.best_val_loss
        if state.improved:
            state.best_val_loss, state.bad_epochs = row["val_loss"], 0
        else:
            state.bad_epochs += 1
        if self.write and (state.improved or self.keep == "last"):
            torch.save({"model": unwrap(state.evaluated).state_dict(), "epoch": state.epoch,
                        "val_loss": row["val_loss"]}, self.path)


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better validation loss (0: never)."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, state, row, predictions):
        if self.patience > 0 and state.bad_epochs >= self.patience:
            state.stop = True


class LastCheckpoint(Callback):
    """Write ``last.pt`` (weights, optimiser, scheduler, counters) after every epoch, for resuming."""

    def __init__(self, path: Path, write: bool = True):
        self.path, self.write = Path(path), write

    def on_epoch_end(self, state, row, predictions):
        if self.write:
            tmp = self.path.with_suffix(".tmp")
            torch.save(state.checkpoint(), tmp)
            tmp.replace(self.path)


class MetricsCSV(Callback):
    """Append each epoch's row to ``metrics.csv`` (columns from the first row written)."""

    def __init__(self, path: Path, write: bool = True):
        self.path, self.write = Path(path), write

    def on_epoch_end(self, state, row, predictions):
        if not self.write:
            return
        new = not self.path.is_file()
        if new:
            fields = list(row)
        else:
            with self.path.open() as handle:
                fields = next(csv.reader(handle))
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


class RichProgress(Callback):
    """A rich progress bar per epoch with the running loss and samples per second."""

    def __init__(self, description: str, enabled: bool = True, log_every: int = 10):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.log_every = max(1, log_every)
        self.description = description
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"),
                                 TextColumn("{task.fields[speed]:.1f} samples/s"), TimeElapsedColumn(),
                                 console=self.console, disable=not self.enabled)
        self.task_id = None

    def on_fit_start(self, state, n_batches):
        self.n_batches = n_batches
        self.progress.start()

    def _new_epoch(self, state):
        self.task_id = self.progress.add_task(f"{self.description} epoch {state.epoch + 1}",
                                              total=self.n_batches, loss=math.nan, speed=0.0)
        self.start, self.seen, self.running = time.perf_counter(), 0, 0.0

    def on_step(self, state, loss, n_samples):
        if self.task_id is None:
            self._new_epoch(state)
        self.seen += n_samples
        self.running = loss if self.seen == n_samples else 0.9 * self.running + 0.1 * loss
        speed = self.seen / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task_id, advance=1, loss=self.running, speed=speed)

    def on_epoch_end(self, state, row, predictions):
        if self.task_id is not None:
            self.progress.remove_task(self.task_id)
            self.task_id = None
        extras = "  ".join(f"{k} {v:.4g}" for k, v in row.items()
                           if k not in ("epoch", "train_loss", "val_loss", "lr", "seconds", "samples_per_s")
                           and isinstance(v, int | float))
        mark = " *" if state.improved else ""
        self.console.print(f"{self.description} epoch {row['epoch']}: train {row['train_loss']:.4f} "
                           f"val {row['val_loss']:.4f}{mark} ({row['samples_per_s']:.1f} samples/s) {extras}",
                           highlight=False, soft_wrap=True)

    def on_fit_end(self, state):
        self.progress.stop()
