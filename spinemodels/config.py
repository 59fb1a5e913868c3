"""Training configurations as typed data: YAML -> validated dataclasses, ``--set a.b=c`` overrides.

A config has five sections::

    task: slice_finder        # a name in the task registry (spinemodels.registry)
    model: {...}              # the task's own ModelConfig dataclass
    data: {...}               # the task's own DataConfig dataclass
    optim: {...}              # OptimConfig (shared by every task)
    train: {...}              # TrainSection (shared by every task)

Every key is checked: an unknown key, a wrong type or a value outside its choices raises
``ConfigError`` naming the key, what came and what is valid.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from spinedata.errors import ConfigError


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: Literal["adamw", "sgd"] = "adamw"  # optimiser
    lr: float = 1e-4  # peak learning rate
    weight_decay: float = 0.01  # decoupled weight decay (AdamW) or L2 (SGD)
    schedule: Literal["step", "cosine", "constant"] = "step"  # learning-rate schedule over epochs
    milestones: list[int] = field(default_factory=lambda: [4, 10])  # epochs where "step" multiplies by gamma
    gamma: float = 0.1  # factor of the "step" schedule
    warmup_epochs: int = 0  # linear warm-up from lr/10 (epochs)
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    ema_decay: float = 0.0  # exponential moving average of the weights per step (e.g. 0.99); validation,
    # best.pt and the out-of-fold predictions then use the averaged weights; 0 disables


@dataclass
class TrainSection:
    """How to train: epochs, batches, folds, seeds, hardware switches."""

    epochs: int = 15  # maximum number of epochs
    batch_size: int = 4  # samples per step (per process under DDP)
    n_folds: int = 5  # folds by study, stratified on severity
    folds: list[int] = field(default_factory=list)  # folds to train when --fold is not given; [] = all
    seed: int = 42  # seeds the fold split, initial weights, sampling and augmentation
    patience: int = 5  # early stopping: epochs without a better validation loss; 0 disables
    num_workers: int = 2  # DataLoader worker processes; 0 loads in the main process
    amp: bool = True  # mixed precision on CUDA (ignored on CPU, which trains in float32)
    channels_last: bool = True  # channels-last memory format on CUDA
    log_every: int = 10  # steps between progress-bar refreshes of the running loss
    checkpoint: Literal["best", "last"] = "best"  # weights kept in best.pt: lowest validation loss, or last epoch
    memory_check: bool = True  # estimate a step's peak memory first; refuse a run that cannot fit the device


@dataclass
class TrainConfig:
    """A whole, validated configuration. ``model`` and ``data`` are the task's own dataclasses."""

    task: str
    model: Any
    data: Any
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        """Plain, YAML-able dict of every resolved value."""
        return {
            "task": self.task,
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim),
            "train": dataclasses.asdict(self.train),
        }


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check (and minimally convert) one value against its annotation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors))
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list of {_type_name(item_type)}, got {value!r}")
        return [_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return build_section(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")  # a bug in a config dataclass


def build_section(cls: type, values: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{key}: expected a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {key + '.' if key else ''}{unknown[0]}; valid keys of {key or 'the config'}: "
            f"{', '.join(names)}"
        )
    kwargs = {name: _convert(v, hints[name], f"{key}.{name}" if key else name) for name, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:  # a required field is missing
        raise ConfigError(f"{key or 'config'}: {error}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> ``(["optim", "lr"], 3e-4)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error})") from None
    return path, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw config dict with each ``a.b=c`` override set."""
    out = yaml.safe_load(yaml.safe_dump(raw))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return out


def config_from_dict(raw: dict, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Validate a raw dict (plus overrides) into a ``TrainConfig`` for its task."""
    from spinemodels.registry import get_task

    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping with keys task, model, data, optim, train; got {raw!r}")
    raw = apply_overrides(raw, list(overrides))
    valid = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}; valid top-level keys: {', '.join(valid)}")
    if "task" not in raw:
        raise ConfigError("the config names no task; add e.g. `task: slice_finder`")
    task = get_task(raw["task"])
    return TrainConfig(
        task=raw["task"],
        model=build_section(task.model_config, raw.get("model"), "model"),
        data=build_section(task.data_config, raw.get("data"), "data"),
        optim=build_section(OptimConfig, raw.get("optim"), "optim"),
        train=build_section(TrainSection, raw.get("train"), "train"),
    )


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config file, apply ``key=value`` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; configs live in configs/*.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    try:
        return config_from_dict(raw, overrides)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
