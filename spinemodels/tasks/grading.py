"""Tasks ``grade_spinal``, ``grade_foraminal``, ``grade_subarticular``: severities from mm-normalised crops.

Each trains a :class:`~spinemodels.networks.grader.SliceSequenceGrader` on crops around the labelled points
(``dataset.labels``) with the metric's class weights (1, 2, 4), missing labels ignored; the spinal task adds
the metric's any_severe_spinal term. After each fold the training studies' class priors are written to
``priors.csv`` (the fallback of ``spine classify`` for rows no model can grade).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spinedata.constants import LEVELS, SEVERITY_WEIGHTS, SUBMISSION_COLUMNS
from spinedata.errors import ConfigError
from spinedata.metric import class_priors, weighted_log_loss
from spinemodels.data.grading import GRADE_GROUPS, CropSettings, GradeDataset, GradeGroup, make_grade_samples
from spinemodels.grading_loss import any_severe_loss, weighted_cross_entropy
from spinemodels.networks.grader import SliceSequenceGrader
from spinemodels.registry import Task, register_task

PRIORS_FILE = "priors.csv"


@dataclass
class GradeModelConfig:
    backbone: str = "densenet121"  # timm model name, run on every slice (1 channel)
    pretrained: bool = True  # ImageNet weights (cache or network); false trains from scratch
    d_model: int = 256  # width of the transformer across slices
    n_layers: int = 4  # transformer layers
    n_heads: int = 8  # attention heads
    dropout: float = 0.1  # transformer dropout
    level_embedding: bool = True  # add a learned embedding of the disc level to every slice token
    class_weights: list[float] = field(default_factory=lambda: list(SEVERITY_WEIGHTS))  # loss weight per class
    any_severe_weight: float = 1.0  # spinal only: weight of the any_severe_spinal term in the loss
    grad_checkpointing: bool = False  # recompute the backbone's activations in backward (less memory, slower)


@dataclass
class GradeDataConfig:
    image_size: int = 224  # output pixels per side of every crop
    side_mm: float = 50.0  # physical side of the crop (mm)
    n_slices: int = 11  # slices per crop, centred on the point's nearest slice
    jitter_mm: float = 5.0  # training: crop centre moves up to this many mm along rows and columns
    jitter_slices: int = 2  # training: centre slice moves up to this many slices (stage-1 errors)
    rotate_deg: float = 10.0  # training: in-plane rotation within +-this (degrees)
    zoom: float = 0.1  # training: field of view multiplied by exp(U(-zoom, zoom))
    intensity: float = 0.3  # training: strength of gamma / contrast / brightness changes
    noise: float = 0.03  # training: largest sigma of added Gaussian noise (0-1 intensities)
    blur_p: float = 0.2  # training: probability of a Gaussian blur
    cache_mb: int = 2048  # per-worker cache of whole stacks


def crop_settings(data: GradeDataConfig) -> CropSettings:
    """The crop part of a data config."""
    fields = asdict(data)
    fields.pop("cache_mb")
    return CropSettings(**fields)


class GradeTask(Task):
    """Shared by the three grading tasks; subclasses set ``name`` and ``group``."""

    group: GradeGroup
    model_config = GradeModelConfig
    data_config = GradeDataConfig

    def __init__(self, config):
        super().__init__(config)
        if len(config.model.class_weights) != 3 or min(config.model.class_weights) <= 0:
            raise ConfigError(f"model.class_weights: expected 3 positive numbers, got {config.model.class_weights}")

    def build_dataset(self, dataset, source, study_ids, train):
        samples = make_grade_samples(dataset.labels, dataset.targets, study_ids, self.group, need_points=True)
        return GradeDataset(source, samples, self.group, crop_settings(self.config.data), train,
                            self.config.data.cache_mb)

    def build_network(self, pretrained=None):
        m = self.config.model
        return SliceSequenceGrader(m.backbone, pretrained=m.pretrained if pretrained is None else pretrained,
                                   d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, dropout=m.dropout,
                                   level_embedding=m.level_embedding, grad_checkpointing=m.grad_checkpointing)

    def loss(self, outputs, batch):
        weights = self.config.model.class_weights
        loss = weighted_cross_entropy(outputs, batch["target"], weights)
        if self.group.name == "spinal" and self.config.model.any_severe_weight > 0:
            loss = loss + self.config.model.any_severe_weight * any_severe_loss(
                outputs[:, :, 0], batch["target"][:, :, 0], weights)
        return loss

    def predict(self, outputs, batch):
        prob = outputs.float().softmax(dim=-1).cpu().numpy()  # (B, L, K, 3)
        present, target = batch["present"].cpu().numpy(), batch["target"].cpu().numpy()
        rows = []
        for b, study_id in enumerate(batch["study_id"]):
            for i, level in enumerate(LEVELS):
                for k, condition in enumerate(self.group.conditions):
                    if not present[b, i, k]:
                        continue
                    rows.append({"study_id": study_id, "condition": condition, "level": level,
                                 **dict(zip(SUBMISSION_COLUMNS, prob[b, i, k].tolist(), strict=True)),
                                 "target": int(target[b, i, k])})
        return rows

    def evaluate(self, predictions: pd.DataFrame) -> dict[str, float]:
        """Weighted log loss of the group (as the metric) and, for spinal, any_severe_spinal."""
        if predictions.empty:
            return {}
        known = predictions[predictions["target"] >= 0]
        if known.empty:
            return {}
        codes = known["target"].to_numpy(dtype=np.int64)
        weights = np.asarray(SEVERITY_WEIGHTS)
        probs = known[list(SUBMISSION_COLUMNS)].to_numpy(dtype=np.float64)
        out = {"wll": weighted_log_loss(codes, probs, weights[codes])}
        if self.group.name == "spinal":
            per_study = known.assign(severe_true=codes == 2, w=weights[codes]).groupby("study_id").agg(
                label=("severe_true", "max"), weight=("w", "max"), p=("severe", "max"))
            p = per_study["p"].to_numpy()
            out["any_severe"] = weighted_log_loss(per_study["label"].to_numpy(dtype=np.int64),
                                                  np.stack([1 - p, p], axis=1), per_study["weight"].to_numpy())
        return out

    def after_fit(self, dataset, train_ids, fold_dir):
        targets = dataset.targets
        train = targets[targets["study_id"].astype(str).isin({str(s) for s in train_ids})]
        class_priors(train).to_csv(Path(fold_dir) / PRIORS_FILE)


@register_task
class GradeSpinalTask(GradeTask):
    name = "grade_spinal"
    group = GRADE_GROUPS["spinal"]


@register_task
class GradeForaminalTask(GradeTask):
    name = "grade_foraminal"
    group = GRADE_GROUPS["foraminal"]


@register_task
class GradeSubarticularTask(GradeTask):
    name = "grade_subarticular"
    group = GRADE_GROUPS["subarticular"]


GRADE_TASKS: dict[str, type[GradeTask]] = {
    cls.name: cls for cls in (GradeSpinalTask, GradeForaminalTask, GradeSubarticularTask)
}
"""Task name -> class, for ``spine classify``."""
