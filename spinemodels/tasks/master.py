"""Task ``grade_master``: all five conditions of a level graded together, with a loss shaped like the metric.

The config names the three grading runs it builds on (``model.spinal_run``, ``foraminal_run``,
``subarticular_run``). Fold k of the master starts from fold k of each grader, which must have been trained
on the same split (same store, ``n_folds`` and ``seed``): the fold is found from the training studies and
a different split is refused, so no validation study was ever seen by a grader. The graders' weights are
loaded in ``prepare_network`` (training), from the fold trained on that fold's training studies. The checkpoint holds the
graders' weights too; inference reads only the graders' ``config.yaml`` (their architecture and crops).

Loss: the mean of the three groups' class-weighted cross-entropies and the any_severe_spinal term, as the
metric averages its four parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spinedata.conditions import CONDITION_GROUPS
from spinedata.constants import CONDITIONS, LEVELS, SEVERITY_WEIGHTS, SUBMISSION_COLUMNS, TARGETS, target_name
from spinedata.metric import MetricError, class_priors, score
from spinemodels.data.grading import GRADE_GROUPS, GradeDataset, GradeSample, make_grade_samples
from spinemodels.data.sampling import unpack_index
from spinemodels.data.views import points_for_group
from spinemodels.errors import ConfigError
from spinemodels.grading_loss import any_severe_loss, weighted_cross_entropy
from spinemodels.networks.master import EXTRA_VIEWS, GROUP_ORDER, MasterGrader
from spinemodels.registry import Task, register_task
from spinemodels.runfiles import BEST_FILE, RunFiles, load_checkpoint, load_weights
from spinemodels.tasks.grading import GRADE_TASKS, PRIORS_FILE, calibrate_run, crop_settings

CONDITION_SLOTS: dict[str, slice] = {name: CONDITION_GROUPS[name].slots for name in GROUP_ORDER}
"""Which of the five condition slots (CONDITIONS order) each group fills."""


@dataclass
class MasterModelConfig:
    spinal_run: str = ""  # run directory of a grade_spinal run
    foraminal_run: str = ""  # run directory of a grade_foraminal run
    subarticular_run: str = ""  # run directory of a grade_subarticular run
    spinal_axial_run: str = ""  # optional: a grade_spinal_axial run, the canal's second view (Axial T2)
    hidden: int = 128  # width of the per-level MLP
    dropout: float = 0.2  # dropout in the MLP
    freeze_graders: bool = True  # keep the graders' weights fixed (train only the joining MLP)
    class_weights: list[float] = field(default_factory=lambda: list(SEVERITY_WEIGHTS))  # loss weight per class
    any_severe_weight: float = 1.0  # weight of the any_severe_spinal term (1: as in the metric)


@dataclass
class MasterDataConfig:
    augment: bool = True  # training crops augmented as each grader's data config says
    cache_mb: int = 2048  # per-worker cache of whole stacks (shared by the three groups)


def grade_task(name: str) -> type:
    """The grading task named ``name`` (the runs a master builds on); ``ConfigError`` otherwise."""
    if name not in GRADE_TASKS:
        raise ConfigError(f"unknown grading task {name!r}; valid: {', '.join(sorted(GRADE_TASKS))}")
    return GRADE_TASKS[name]


class GraderRun(RunFiles):
    """A grading run the master builds on: its files, its config read with the grading tasks."""

    def config(self):
        return self.read_config(grade_task)


class MasterDataset(torch.utils.data.Dataset):
    """Sample: ``image_<group>``, ``present_<group>`` for the three groups, ``target`` ``(5, 5)`` (level,
    condition in CONDITIONS order; -1 missing), ``study_id``. ``requested_ids``: the studies asked for (also
    those without a point), sorted."""

    def __init__(self, parts: dict[str, GradeDataset], requested_ids: list[str] | None = None):
        self.parts = parts
        ids = [[s.study_id for s in part.samples] for part in parts.values()]
        if any(i != ids[0] for i in ids):
            raise ValueError("the three group datasets must hold the same studies in the same order")
        self.study_ids = ids[0]
        self.requested_ids = sorted(str(s) for s in (self.study_ids if requested_ids is None else requested_ids))

    def __len__(self) -> int:
        return len(self.study_ids)

    def __getitem__(self, index) -> dict:
        i, _ = unpack_index(index)
        items = {}
        for k, group in enumerate(self.parts):
            key = (i, index[1] + 7919 * k, index[2]) if isinstance(index, tuple | list) else index
            items[group] = self.parts[group][key]
        return join_groups(self.study_ids[i], items)


def join_groups(study_id: str, items: dict[str, dict]) -> dict:
    """One master sample from its groups' ``GradeDataset`` items (``MasterDataset``'s sample)."""
    out: dict = {"study_id": study_id}
    target = torch.full((len(LEVELS), len(CONDITIONS)), -1, dtype=torch.int64)
    for group, item in items.items():
        out[f"image_{group}"], out[f"present_{group}"] = item["image"], item["present"]
        if group in CONDITION_SLOTS:  # the extra views grade conditions these already hold
            target[:, CONDITION_SLOTS[group]] = item["target"]
    out["target"] = target
    return out


def master_samples(dataset, points: pd.DataFrame, targets, study_ids, runs: dict[str, RunFiles]
                   ) -> dict[str, list[GradeSample]]:
    """Each group's samples (the three groups, and the extra views of ``runs``) of the studies that have a
    point of any of the three groups."""
    groups = [*GROUP_ORDER, *(v for v in EXTRA_VIEWS if v in runs)]
    samples = {g: make_grade_samples(points_for_group(dataset, points, GRADE_GROUPS[g], study_ids), targets,
                                     study_ids, GRADE_GROUPS[g], need_points=False) for g in groups}
    keep = [j for j in range(len(study_ids))
            if any(p is not None for g in GROUP_ORDER for row in samples[g][j].points for p in row)]
    return {g: [samples[g][j] for j in keep] for g in groups}


def master_parts(dataset, source, points: pd.DataFrame, targets, study_ids, runs: dict[str, RunFiles], train: bool,
                 augment: bool, cache_mb: int) -> MasterDataset:
    """The group datasets of ``runs`` (``master_samples``) with each grader's crops."""
    parts = {g: GradeDataset(source, samples, GRADE_GROUPS[g], crop_settings(runs[g].config().data),
                             train=train and augment, cache_mb=cache_mb)
             for g, samples in master_samples(dataset, points, targets, study_ids, runs).items()}
    return MasterDataset(parts, list(study_ids))


@register_task
class GradeMasterTask(Task):
    name = "grade_master"
    model_config = MasterModelConfig
    data_config = MasterDataConfig

    def runs(self) -> dict[str, GraderRun]:
        m = self.config.model
        paths = {"spinal": m.spinal_run, "foraminal": m.foraminal_run, "subarticular": m.subarticular_run,
                 "spinal_axial": m.spinal_axial_run}
        runs = {}
        for group, path in paths.items():
            if not path and group in EXTRA_VIEWS:
                continue
            if not path:
                raise ConfigError(f"model.{group}_run: name the grade_{group} run directory the master builds on")
            run = GraderRun(path)
            task = run.config().task
            if task != f"grade_{group}":
                raise ConfigError(f"model.{group}_run: {path} is a {task!r} run, expected grade_{group}")
            runs[group] = run
        return runs

    def build_dataset(self, dataset, source, study_ids, train):
        return master_parts(dataset, source, dataset.labels, dataset.targets, study_ids, self.runs(), train,
                            self.config.data.augment, self.config.data.cache_mb)

    @staticmethod
    def grader_fold(run: RunFiles, train_ids: list[str]) -> int:
        """The fold of ``run`` trained on exactly the studies ``train_ids`` (sorted str)."""
        folds = run.folds()
        for k in run.trained_folds():
            if sorted(folds.loc[folds["fold"] != k, "study_id"].astype(str)) == train_ids:
                return k
        raise ConfigError(
            f"{run.path} has no fold trained on this master fold's training studies; train the graders and the "
            "master on the same store with the same train.n_folds and train.seed (else validation leaks)"
        )

    def build_network(self, pretrained=None):
        """The graders' architectures (weights: ``prepare_network``) joined by the per-level MLP."""
        m = self.config.model
        graders = {}
        for group, run in self.runs().items():
            config = run.config()
            graders[group] = grade_task(config.task)(config).build_network(pretrained=False)
        return MasterGrader(graders, hidden=m.hidden, dropout=m.dropout, freeze_graders=m.freeze_graders)

    def prepare_network(self, network, train_set):
        """Start each grader from its fold trained on this fold's training studies."""
        for group, run in self.runs().items():
            path = run.fold_dir(self.grader_fold(run, train_set.requested_ids)) / BEST_FILE
            load_weights(network.graders[group], load_checkpoint(path)["model"], path)

    def forward(self, network, batch):
        return network(batch)

    def batch_size_of(self, batch):
        return len(batch["study_id"])

    def loss(self, outputs, batch):
        weights, target = self.config.model.class_weights, batch["target"]
        parts = [weighted_cross_entropy(outputs[:, :, CONDITION_SLOTS[g]], target[:, :, CONDITION_SLOTS[g]], weights)
                 for g in GROUP_ORDER]
        w = self.config.model.any_severe_weight
        total = sum(parts) + w * any_severe_loss(outputs[:, :, 0], target[:, :, 0], weights)
        return total / (len(parts) + w)

    def predict(self, outputs, batch):
        prob = outputs.float().softmax(dim=-1).cpu().numpy()  # (B, 5, 5, 3)
        target = batch["target"].cpu().numpy()
        rows = []
        for b, study_id in enumerate(batch["study_id"]):
            for i, level in enumerate(LEVELS):
                for j, condition in enumerate(CONDITIONS):
                    rows.append({"study_id": study_id, "condition": condition, "level": level,
                                 **dict(zip(SUBMISSION_COLUMNS, prob[b, i, j].tolist(), strict=True)),
                                 "target": int(target[b, i, j])})
        return rows

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        """The competition score (and its parts) of the validation studies."""
        if predictions.empty:
            return {}
        table = predictions.assign(target_name=[target_name(c, lv) for c, lv in
                                                zip(predictions["condition"], predictions["level"], strict=True)])
        truth = table.pivot(index="study_id", columns="target_name", values="target").reindex(columns=list(TARGETS))
        submission = table.assign(row_id=table["study_id"].astype(str) + "_" + table["target_name"])
        try:
            result = score(submission[["row_id", *SUBMISSION_COLUMNS]], truth.fillna(-1).reset_index())
        except MetricError:  # e.g. no labelled row of one group in a tiny validation fold
            return {}
        return {"score": result["score"], "any_severe": result["any_severe_spinal"]}

    def after_fit(self, dataset, train_ids, fold_dir):
        targets = dataset.targets
        train = targets[targets["study_id"].astype(str).isin({str(s) for s in train_ids})]
        class_priors(train).to_csv(Path(fold_dir) / PRIORS_FILE)

    def after_run(self, run):
        """Fit the calibration on the pooled out-of-fold predictions of every trained fold."""
        calibrate_run(run)


def master_probabilities(network: MasterGrader, batch: dict) -> np.ndarray:
    """``(5, 5, 3)`` probabilities (level, condition, class) of one study's batch of size 1."""
    return network(batch).float().softmax(dim=-1)[0].cpu().numpy()
