"""Training configurations as typed data: YAML -> validated dataclasses, ``--set a.b=c`` overrides.

A config has five sections::

    task: slice_finder        # a name in the task registry (spinemodels.registry, spinemodels.catalog)
    model: {...}              # the task's own ModelConfig dataclass
    data: {...}               # the task's own DataConfig dataclass
    optim: {...}              # OptimConfig (shared by every task)
    train: {...}              # TrainSection (shared by every task)

Every key is checked: an unknown key, a wrong type, a value outside its choices or its range (``BOUNDS``)
raises ``ConfigError`` naming the key, what came and what is valid. This module knows no task: the caller
passes how a task name becomes a task (``spinemodels.catalog.config_from_dict`` and ``load_config`` pass
the catalog's ``get_task``).

A config is a YAML file, or one shipped inside the package (``spinemodels/configs/``), named
``pkg:NAME`` (``pkg:keypoints``, ``pkg:cpu/keypoints``; ``.yaml`` optional): ``resolve_config``,
``packaged_config_names``. A wheel installed anywhere finds those through ``importlib.resources``.

YAML is read by ``load_yaml`` only: a file of at most ``MAX_YAML_BYTES``, safe tags, at most
``MAX_YAML_ALIASES`` aliases (an "alias bomb" of a few hundred bytes otherwise expands into gigabytes).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from spinemodels.errors import ConfigError

MAX_YAML_BYTES = 1 << 20
"""Largest YAML file read (a config or a run's ``config.yaml`` is a few kilobytes)."""
MAX_YAML_ALIASES = 16
"""Most YAML aliases (``*name``) a document may use; the project's configs use none. With 16, a document
expands at most a few hundred times (an alias bomb nests aliases of aliases: 9 levels of 9 make 10^8 nodes)."""


class _LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document with more than ``MAX_YAML_ALIASES`` aliases."""

    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise ConfigError(
                    f"more than {MAX_YAML_ALIASES} YAML aliases (*name); write the values out instead"
                )
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """Parse one YAML document with safe tags and at most ``MAX_YAML_ALIASES`` aliases; ``ConfigError``
    (one line) for anything else or invalid YAML."""
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML ({' '.join(str(error).split())[:300]})") from None
    finally:
        loader.dispose()


PACKAGED_PREFIX = "pkg:"
"""Prefix of a config shipped inside the package: ``pkg:cpu/keypoints`` is ``spinemodels/configs/cpu/keypoints.yaml``."""
PACKAGED_CONFIGS = "spinemodels.configs"
"""The package (folder) that holds the shipped configs: the reference ones, and the small ones under ``cpu/``."""


def packaged_config_names() -> list[str]:
    """Names of the configs shipped inside the package, e.g. ``keypoints``, ``cpu/keypoints``."""
    names = []
    root = importlib.resources.files(PACKAGED_CONFIGS)
    for folder, prefix in ((root, ""), (root / "cpu", "cpu/")):
        names += [prefix + item.name.removesuffix(".yaml") for item in folder.iterdir()
                  if item.is_file() and item.name.endswith(".yaml")]
    return sorted(names)


def packaged_config(name: str) -> Path:
    """The file of the shipped config ``name`` (``cpu/keypoints``, with or without ``pkg:`` and ``.yaml``);
    ``ConfigError`` listing the shipped names otherwise."""
    name = name.removeprefix(PACKAGED_PREFIX).removesuffix(".yaml").strip("/")
    if name in packaged_config_names():
        # installed as plain files (a wheel, an editable install, a checkout): a real path
        return Path(str(importlib.resources.files(PACKAGED_CONFIGS).joinpath(*name.split("/")))).with_suffix(".yaml")
    shipped = ", ".join(PACKAGED_PREFIX + n for n in packaged_config_names())
    raise ConfigError(f"no packaged config {name!r}; packaged configs: {shipped}")


def resolve_config(source: str | Path) -> Path:
    """The file of a config: ``pkg:NAME`` names a packaged config (``packaged_config``), anything else is a path."""
    if isinstance(source, str) and source.startswith(PACKAGED_PREFIX):
        return packaged_config(source)
    return Path(source)


def read_yaml_file(path: str | Path) -> Any:
    """``load_yaml`` of a file of at most ``MAX_YAML_BYTES``; ``ConfigError`` naming the file otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror or error})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_YAML_BYTES} bytes; not a config")
    try:
        return load_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


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

    BOUNDS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "lr": (0, None), "weight_decay": (0, None), "gamma": (0, None), "warmup_epochs": (0, None),
        "grad_clip": (0, None), "ema_decay": (0, 1), "milestones": (0, None),
    }  # fmt: skip
    """Inclusive ``(low, high)`` of numeric fields (of each item of a list); None: unbounded. ``lr`` and
    ``gamma`` must be above 0 (``POSITIVE``)."""
    POSITIVE: ClassVar[tuple[str, ...]] = ("lr", "gamma")


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

    BOUNDS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "epochs": (1, None), "batch_size": (1, None), "n_folds": (2, None), "folds": (0, None),
        "patience": (0, None), "num_workers": (0, None), "log_every": (1, None),
    }  # fmt: skip
    """Inclusive ``(low, high)`` of numeric fields (of each item of a list); None: unbounded."""


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
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {_show(value)}")
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
            raise ConfigError(f"{key}: expected a list of {_type_name(item_type)}, got {_show(value)}")
        return [_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return build_section(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {_show(value)}") from None
        if not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_show(value)}")
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")  # a bug in a config dataclass


def build_section(cls: type, values: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{key}: expected a mapping of keys to values, got {_show(values)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {key + '.' if key else ''}{unknown[0]}; valid keys of {key or 'the config'}: "
            f"{', '.join(names)}"
        )
    kwargs = {name: _convert(v, hints[name], f"{key}.{name}" if key else name) for name, v in values.items()}
    _check_bounds(cls, kwargs, key)
    try:
        return cls(**kwargs)
    except TypeError as error:  # a required field is missing
        raise ConfigError(f"{key or 'config'}: {error}") from None


def _check_bounds(cls: type, kwargs: dict, key: str) -> None:
    """``ConfigError`` for a value outside the class's ``BOUNDS`` (or not above 0 where ``POSITIVE``)."""
    bounds = getattr(cls, "BOUNDS", {})
    positive = getattr(cls, "POSITIVE", ())
    for name, value in kwargs.items():
        if name not in bounds:
            continue
        low, high = bounds[name]
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            full = f"{key}.{name}" if key else name
            if name in positive and item <= 0:
                raise ConfigError(f"{full}: must be above 0, got {item!r}")
            if (low is not None and item < low) or (high is not None and item > high):
                allowed = f"at least {low}" if high is None else f"between {low} and {high}"
                raise ConfigError(f"{full}: must be {allowed}, got {item!r}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> ``(["optim", "lr"], 3e-4)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {_show(text)}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {_show(text)}: empty key")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except ConfigError as error:
        raise ConfigError(f"override {_show(text)}: value: {error}") from None
    return path, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw config dict with each ``a.b=c`` override set."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {_show(text)}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return out


TaskLookup = Callable[[str], Any]
"""Task name -> task class (its ``model_config`` and ``data_config``); raises ``ConfigError`` for an unknown name."""


def build_config(raw: dict, overrides: list[str] | tuple[str, ...], get_task: TaskLookup) -> TrainConfig:
    """Validate a raw dict (plus overrides) into a ``TrainConfig`` for its task, found by ``get_task``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping with keys task, model, data, optim, train; got {_show(raw)}")
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


def read_config(path: str | Path, overrides: list[str] | tuple[str, ...], get_task: TaskLookup) -> TrainConfig:
    """Read a YAML config file (or ``pkg:NAME``, a packaged one: ``resolve_config``), apply ``key=value``
    overrides and validate it (``build_config``)."""
    path = resolve_config(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; a packaged config is named pkg:NAME: "
                          f"{', '.join(PACKAGED_PREFIX + n for n in packaged_config_names())}")
    raw = read_yaml_file(path)
    try:
        return build_config(raw, overrides, get_task)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
