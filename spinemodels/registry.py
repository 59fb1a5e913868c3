"""The task registry: task name -> what it takes to train one model of the pipeline.

A task bundles a dataset over the store, a network, a loss, per-sample predictions (saved out of fold)
and metrics over those predictions. A new model type plugs in by subclassing ``Task`` and decorating it::

    @register_task
    class GradeSpinal(Task):
        name = "grade_spinal"
        model_config = GradeModelConfig     # dataclass, the config's `model:` section
        data_config = GradeDataConfig       # dataclass, the config's `data:` section
        def build_dataset(self, dataset, source, study_ids, train): ...
        def build_network(self): ...
        def loss(self, outputs, batch): ...
        def predict(self, outputs, batch): ...

and by importing its module in ``spinemodels/tasks/__init__.py``; ``spinemodels.catalog`` looks tasks up by
name. This module imports no task, so tasks, configs and run directories can all build on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from spinemodels.folds import worst_severity

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from spinemodels.config import TrainConfig

_TASKS: dict[str, type[Task]] = {}


class Task:
    """Base class of a trainable model. Subclasses set the class attributes and override the methods."""

    name: ClassVar[str]
    model_config: ClassVar[type]
    data_config: ClassVar[type]

    def __init__(self, config: TrainConfig):
        self.config = config

    # --- data -------------------------------------------------------------------------------------------
    def study_strata(self, dataset: Any) -> pd.Series:
        """Stratum of every usable study (index: study_id str), used to stratify the fold split.

        Default: the study's worst severity over all 25 targets (0/1/2), from ``dataset.targets``.
        """
        return worst_severity(dataset.targets, dataset.study_ids)

    def build_dataset(self, dataset: Any, source: Any, study_ids: list[str], train: bool
                      ) -> torch.utils.data.Dataset:
        """A torch Dataset over the given studies; ``train`` switches augmentation on.

        ``dataset`` is the opened store (to plan samples); ``source`` is what the torch dataset keeps to
        read pixels in its workers (the store path, or the opened dataset when there is no path).
        """
        raise NotImplementedError

    # --- model ------------------------------------------------------------------------------------------
    def build_network(self, pretrained: bool | None = None) -> torch.nn.Module:
        """The network, from ``self.config.model``; ``pretrained=None`` follows the config."""
        raise NotImplementedError

    def forward(self, network: torch.nn.Module, batch: dict) -> Any:
        """Run the network on a batch (default: ``network(batch["image"])``)."""
        return network(batch["image"])

    def batch_size_of(self, batch: dict) -> int:
        """Number of samples in a batch (default: length of ``batch["image"]``)."""
        return len(batch["image"])

    def loss(self, outputs: Any, batch: dict) -> torch.Tensor:
        """Scalar loss of a batch."""
        raise NotImplementedError

    def predict(self, outputs: Any, batch: dict) -> list[dict]:
        """One dict per prediction (study_id first), written to ``oof.csv`` for validation studies."""
        return []

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        """Metrics over the validation predictions of one epoch (added to ``metrics.csv``)."""
        return {}

    def prepare_network(self, network: torch.nn.Module, train_set: Any) -> None:
        """Hook run on a fresh network before training, with the fold's training dataset (e.g. to start from
        its class priors)."""

    def after_fit(self, dataset: Any, train_ids: list[str], fold_dir: Any) -> None:
        """Hook run once per fold after training (e.g. learn statistics from the training studies)."""

    def after_run(self, run: Any) -> None:
        """Hook run once after every requested fold is trained (e.g. calibrate on the pooled out-of-fold
        predictions)."""


def labelled_predictions(predictions: pd.DataFrame, truth: str) -> pd.DataFrame:
    """The validation predictions whose truth (column ``truth``, -1 where missing) is known, for ``evaluate``;
    empty when there are none."""
    return predictions if predictions.empty else predictions[predictions[truth] >= 0]


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} has no task name")
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise TypeError(f"task {cls.name!r} is registered twice ({_TASKS[cls.name].__name__}, {cls.__name__})")
    _TASKS[cls.name] = cls
    return cls


def registered_tasks() -> dict[str, type[Task]]:
    """Every task registered so far, by name (``spinemodels.catalog`` registers the built-in ones first)."""
    return dict(_TASKS)
