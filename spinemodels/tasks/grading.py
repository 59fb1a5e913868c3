"""Tasks ``grade_spinal``, ``grade_foraminal``, ``grade_subarticular`` and ``grade_spinal_axial`` (the spinal
canal's cross-section on Axial T2, a second view): severities from mm-normalised crops, one task per condition
group of ``spinedata.conditions`` (``GRADE_TASKS``).

Each trains a :class:`~spinemodels.networks.grader.SliceSequenceGrader` on crops around the labelled points
(``dataset.labels``), one sample per labelled level and side, with the metric's class weights (1, 2, 4). The
network starts from the weighted class priors of each level and side of the training samples. After each
fold the training studies' class priors are written to ``priors.csv`` (the fallback of ``spine classify``
for rows no model can grade) and the grades shown in training to ``train_counts.csv``; after the run, a
calibration (``calibration.json``) is fitted on the pooled out-of-fold predictions of its folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spinedata.constants import LEVELS, SEVERITY_WEIGHTS, SUBMISSION_COLUMNS
from spinedata.metric import any_severe_spinal, class_priors, weighted_log_loss
from spinemodels.calibration import (
    CALIBRATION_FILE,
    fit_calibration,
    oversampling_correction,
    weighted_prior_logits,
)
from spinemodels.data.grading import (
    GRADE_GROUPS,
    CropSettings,
    GradeGroup,
    LevelGradeDataset,
    level_samples,
    make_grade_samples,
)
from spinemodels.data.views import points_for_group
from spinemodels.errors import ConfigError
from spinemodels.grade_audit import exclude_targets, read_exclusions
from spinemodels.grading_loss import weighted_cross_entropy
from spinemodels.networks.backbones import SliceTransformerConfig
from spinemodels.networks.grader import SliceSequenceGrader
from spinemodels.registry import Task, labelled_predictions, register_task

PRIORS_FILE = "priors.csv"
TRAIN_COUNTS_FILE = "train_counts.csv"


@dataclass
class GradeModelConfig(SliceTransformerConfig):
    level_embedding: bool = True  # add a learned embedding of the disc level to every slice token
    class_weights: list[float] = field(default_factory=lambda: list(SEVERITY_WEIGHTS))  # loss weight per class
    grad_checkpointing: bool = False  # recompute the backbone's activations in backward (less memory, slower)
    slices_as_channels: bool = False  # 2.5D: the crop's slices as channels of one image (no attention across slices)


@dataclass
class GradeDataConfig(CropSettings):
    """The crops (``CropSettings``' fields, first) and how training reads them."""

    cache_mb: int = 2048  # per-worker cache of whole stacks
    oversample: list[int] = field(default_factory=lambda: [1, 1, 1])  # training: times each grade is shown
    exclude_labels: str = ""  # training: CSV of (study_id, condition, level) left out (spine audit --grade-findings)


def calibrate_run(run) -> None:
    """Write ``calibration.json`` fitted on the pooled ``oof.csv`` of the run's trained folds."""
    oof = run.oof()
    if len(oof) and (oof["target"] >= 0).any():
        fit_calibration(oof).save(run.path / CALIBRATION_FILE)


def crop_settings(data: GradeDataConfig) -> CropSettings:
    """The crop part of a data config."""
    return CropSettings(**{f.name: getattr(data, f.name) for f in fields(CropSettings)})


class GradeTask(Task):
    """Shared by the three grading tasks; subclasses set ``name`` and ``group``."""

    group: GradeGroup
    model_config = GradeModelConfig
    data_config = GradeDataConfig

    def __init__(self, config):
        super().__init__(config)
        if len(config.model.class_weights) != 3 or min(config.model.class_weights) <= 0:
            raise ConfigError(f"model.class_weights: expected 3 positive numbers, got {config.model.class_weights}")
        repeats = config.data.oversample
        if len(repeats) != 3 or any(int(r) != r or r < 1 for r in repeats):
            raise ConfigError(f"data.oversample: expected 3 whole numbers >= 1 (times each grade is shown), got {repeats}")

    def training_targets(self, dataset) -> pd.DataFrame:
        """``dataset.targets`` without the labels of ``data.exclude_labels``."""
        path = self.config.data.exclude_labels
        return exclude_targets(dataset.targets, read_exclusions(path)) if path else dataset.targets

    def build_dataset(self, dataset, source, study_ids, train):
        targets = self.training_targets(dataset) if train else dataset.targets
        points = points_for_group(dataset, dataset.labels, self.group, study_ids)
        grid = make_grade_samples(points, targets, study_ids, self.group, need_points=True)
        repeats = tuple(self.config.data.oversample) if train else (1, 1, 1)
        samples = level_samples(grid, need_target=True, repeats=repeats)
        return LevelGradeDataset(source, samples, self.group, crop_settings(self.config.data), train,
                                 self.config.data.cache_mb)

    def build_network(self, pretrained=None):
        m = self.config.model
        return SliceSequenceGrader(m.backbone, pretrained=m.pretrained if pretrained is None else pretrained,
                                   d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, dropout=m.dropout,
                                   n_sides=self.group.sides, level_embedding=m.level_embedding,
                                   grad_checkpointing=m.grad_checkpointing,
                                   slices_as_channels=self.config.data.n_slices if m.slices_as_channels else 0)

    def prepare_network(self, network, train_set):
        """Start from the log of the class priors of each level and side as trained (repeats included),
        weighted by the loss's class weights (the best constant under that loss), and undo the oversampling at
        inference."""
        counts = self.grade_counts(train_set)
        with torch.no_grad():
            network.prior_logit.copy_(torch.as_tensor(weighted_prior_logits(counts, self.config.model.class_weights),
                                                      dtype=torch.float32))
            network.log_correction.copy_(torch.as_tensor(oversampling_correction(self.config.data.oversample),
                                                         dtype=torch.float32))

    def grade_counts(self, train_set) -> np.ndarray:
        """``(5, sides, 3)`` grades of the training samples, repeats included."""
        counts = np.zeros((len(LEVELS), self.group.sides, 3))
        for sample in train_set.samples:
            counts[sample.level, sample.side, sample.target] += 1
        return counts

    def forward(self, network, batch):
        return network(batch["image"], batch["level"], batch["side"])

    def loss(self, outputs, batch):
        return weighted_cross_entropy(outputs, batch["target"], self.config.model.class_weights)

    def predict(self, outputs, batch):
        prob = outputs.float().softmax(dim=-1).cpu().numpy()  # (B, 3)
        level, side, target = (batch[k].cpu().numpy() for k in ("level", "side", "target"))
        return [{"study_id": study_id, "condition": self.group.conditions[side[b]], "level": LEVELS[level[b]],
                 **dict(zip(SUBMISSION_COLUMNS, prob[b].tolist(), strict=True)), "target": int(target[b])}
                for b, study_id in enumerate(batch["study_id"])]

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        """Weighted log loss of the group (as the metric) and, for spinal, any_severe_spinal."""
        known = labelled_predictions(predictions, "target")
        if known.empty:
            return {}
        codes = known["target"].to_numpy(dtype=np.int64)
        weights = np.asarray(SEVERITY_WEIGHTS)
        probs = known[list(SUBMISSION_COLUMNS)].to_numpy(dtype=np.float64)
        out = {"wll": weighted_log_loss(codes, probs, weights[codes])}
        if self.group.name == "spinal":
            out["any_severe"] = any_severe_spinal(known["study_id"], codes, known["severe"])
        return out

    def after_fit(self, dataset, train_ids, fold_dir):
        targets = dataset.targets
        train = targets[targets["study_id"].astype(str).isin({str(s) for s in train_ids})]
        class_priors(train).to_csv(Path(fold_dir) / PRIORS_FILE)
        points = points_for_group(dataset, dataset.labels, self.group, train_ids)
        grid = make_grade_samples(points, self.training_targets(dataset), train_ids, self.group, need_points=True)
        shown = level_samples(grid, need_target=True, repeats=tuple(self.config.data.oversample))
        table = pd.DataFrame([(self.group.conditions[s.side], LEVELS[s.level], s.target) for s in shown],
                             columns=["condition", "level", "target"])
        counts = table.value_counts().rename("count").reset_index().sort_values(["condition", "level", "target"])
        counts.to_csv(Path(fold_dir) / TRAIN_COUNTS_FILE, index=False)

    def after_run(self, run):
        """Fit the calibration on the pooled out-of-fold predictions of every trained fold."""
        calibrate_run(run)


def grade_task_of(group: GradeGroup) -> type[GradeTask]:
    """The grading task of a condition group, ``grade_<group>`` (registered)."""
    title = "".join(part.title() for part in group.name.split("_"))
    return register_task(type(f"Grade{title}Task", (GradeTask,), {"name": f"grade_{group.name}", "group": group}))


GRADE_TASKS: dict[str, type[GradeTask]] = {task.name: task for task in map(grade_task_of, GRADE_GROUPS.values())}
"""Task name -> class, for ``spine classify``."""
