"""The built-in tasks by name, and configs validated against them.

Importing this module registers the built-in tasks (``spinemodels.tasks``); a task of another package is
found once its module (which decorates it with ``register_task``) has been imported.
"""

from __future__ import annotations

from pathlib import Path

from spinemodels import config as _config
from spinemodels.config import TrainConfig
from spinemodels.errors import ConfigError
from spinemodels.registry import Task, registered_tasks
from spinemodels.tasks import BUILTIN_TASKS

__all__ = ["BUILTIN_TASKS", "config_from_dict", "get_task", "load_config", "task_names"]


def task_names() -> list[str]:
    """Names of every registered task."""
    return sorted(registered_tasks())


def get_task(name: str) -> type[Task]:
    """The task class registered under ``name``; ``ConfigError`` listing the valid names otherwise."""
    tasks = registered_tasks()
    if name not in tasks:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(tasks))}")
    return tasks[name]


def config_from_dict(raw: dict, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Validate a raw dict (plus overrides) into a ``TrainConfig`` for its task."""
    return _config.build_config(raw, overrides, get_task)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config file, apply ``key=value`` overrides and validate it."""
    return _config.read_config(path, overrides, get_task)
