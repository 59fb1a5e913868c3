"""Stage 2 inference (``spine classify``): severities of all 25 targets of every study, as a submission.

For each condition group (spinal, foraminal, subarticular) the crops are cut around the located points
(``coords.csv`` of ``spine locate``) exactly as in validation, every fold of every run of that group is
applied, and the softmax probabilities are averaged. A master run joins the graders' features of one level
from the same crops (``StudyCrops``: each study's crops are cut once, whoever reads them). A row no model
can grade (no run for its group, no point, or a point that lies in a series of another role because the
study lacks the group's series) gets the training class priors stored by the runs, with a warning. Every
study gets all 25 rows, each summing to 1; a missing row is an error, never a silent gap.
"""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from spinedata.conditions import CONDITION_ROLE
from spinedata.constants import (
    CONDITIONS,
    LEVELS,
    SUBMISSION_COLUMNS,
    TARGET_INDEX,
    TARGETS,
    row_id,
    target_name,
)
from spinedata.errors import SpineError
from spinemodels.calibration import CALIBRATION_FILE, Calibration
from spinemodels.data.grading import (
    GRADE_GROUPS,
    CropPoint,
    CropSettings,
    GradeDataset,
    GradeGroup,
    GradeSample,
    PixelCache,
    make_grade_samples,
)
from spinemodels.data.views import is_cross_view, points_for_group
from spinemodels.inference.locate_report import coords_warnings
from spinemodels.inference.runs import FoldModels, runs_for
from spinemodels.networks.grader import grid_outputs
from spinemodels.tasks.grading import GRADE_TASKS, PRIORS_FILE, crop_settings
from spinemodels.tasks.master import join_groups, master_probabilities, master_samples


class ClassifyError(SpineError):
    """The runs or coordinates given to ``classify`` cannot produce a submission."""


MASTER = "master"
"""Key of master runs (``grade_master``) in the dict of :func:`load_grade_runs`."""


def load_grade_runs(run_paths: list[str | Path], device: torch.device) -> dict[str, list[FoldModels]]:
    """Group name (or ``"master"``) -> its runs (every trained fold loaded, eval mode)."""
    runs: dict[str, list[FoldModels]] = {name: [] for name in (*GRADE_GROUPS, MASTER)}
    for run, task in runs_for(run_paths, (*GRADE_TASKS, "grade_master"), "classify", ClassifyError):
        group = MASTER if task == "grade_master" else GRADE_TASKS[task].group.name
        runs[group].append(FoldModels.load(run, device))
    if not any(runs.values()):
        raise ClassifyError("classify needs at least one grading run (--model RUN_DIR, trained with `spine train`)")
    return runs


def run_priors(runs: dict[str, list[FoldModels]]) -> pd.DataFrame:
    """Class priors (25 targets x 3) averaged over every fold's ``priors.csv`` of every run."""
    tables = []
    for group_runs in runs.values():
        for fm in group_runs:
            for k in fm.networks:
                path = fm.run.fold_dir(k) / PRIORS_FILE
                if not path.is_file():
                    raise ClassifyError(f"{path} is missing; retrain this run (priors are written after each fold)")
                tables.append(pd.read_csv(path, index_col="target")[list(SUBMISSION_COLUMNS)])
    priors = sum(t.reindex(list(TARGETS)) for t in tables) / len(tables)
    if priors.isna().any().any():
        raise ClassifyError("priors.csv files lack some of the 25 targets; retrain the runs")
    return priors


def _usable_points(study: Any, sample: GradeSample, group: GradeGroup) -> tuple[GradeSample, list[str]]:
    """Drop points in series the study lacks or of another role than the group's (with warnings)."""
    warnings, grid = [], []
    for level, row in zip(LEVELS, sample.points, strict=True):
        kept: list[CropPoint | None] = []
        for condition, point in zip(group.conditions, row, strict=True):
            if point is not None:
                series = study.series.get(point.series_id)
                where = f"study {sample.study_id} {condition} {level}"
                if series is None or point.stack >= len(series.stacks):
                    warnings.append(f"{where}: series {point.series_id} stack {point.stack} is not in the store")
                    point = None
                elif series.role != group.role:
                    warnings.append(f"{where}: point lies on {series.role}, not {group.role}; not graded")
                    point = None
            kept.append(point)
        grid.append(tuple(kept))
    return GradeSample(sample.study_id, tuple(grid), sample.targets), warnings


class StudyCrops:
    """One study's crop grids, each cut once: the ``GradeDataset`` item of a (group, crop settings, sample),
    shared by every run that asks for it (the group's graders and a master built on them), with one stack
    cache for the study."""

    def __init__(self, dataset: Any, cache_mb: int):
        self.dataset = dataset
        self.cache = PixelCache(cache_mb * 2**20)
        self.items: dict[tuple[str, tuple, GradeSample], dict] = {}

    def grid(self, sample: GradeSample, group: GradeGroup, settings: CropSettings) -> dict:
        """``image`` ``(5, K, N, S, S)``, ``present`` ``(5, K)``, ``target``, ``study_id`` of ``sample``."""
        key = (group.name, astuple(settings), sample)
        if key not in self.items:
            data = GradeDataset(self.dataset, [sample], group, settings, train=False, cache=self.cache)
            self.items[key] = data[0]
        return self.items[key]


@torch.no_grad()
def grade_study(crops: StudyCrops, sample: GradeSample, group: GradeGroup, group_runs: list[FoldModels],
                device: torch.device, calibrations: dict[Path, Calibration]) -> np.ndarray:
    """``(5, K, 3)`` probabilities: each run's folds averaged and calibrated, then the runs averaged; NaN where no
    crop exists."""
    total = np.zeros((len(LEVELS), group.sides, 3))
    count = 0
    present = None
    if all(point is None for row in sample.points for point in row):
        return np.full_like(total, np.nan)
    for fm in group_runs:
        item = crops.grid(sample, group, crop_settings(fm.task.config.data))
        image = item["image"][None].to(device)
        present = item["present"].numpy()
        run_probs = np.mean([grid_outputs(network, image)[1].float().softmax(dim=-1)[0].cpu().numpy()
                             for network in fm.networks.values()], axis=0)  # (5, K, 3)
        total += calibrated(run_probs, group.conditions, present[:, 0], calibrations[fm.run.path])
        count += 1
    out = total / max(count, 1)
    if present is None:
        return np.full_like(out, np.nan)
    out[~present] = np.nan
    return out


@torch.no_grad()
def grade_master_study(crops: StudyCrops, coords: pd.DataFrame, study_id: str, master_runs: list[FoldModels],
                       device: torch.device, calibrations: dict[Path, Calibration]) -> np.ndarray | None:
    """``(5, 5, 3)`` probabilities (level, condition, class) averaged over the master runs' folds; None when
    the study has no usable point of any group (the master would only see its "missing" vectors). The crops
    are those of its graders' groups (``crops``), as their own runs read them."""
    total, count = np.zeros((len(LEVELS), len(CONDITIONS), 3)), 0
    usable = _usable_coords(crops.dataset.study(study_id), coords[coords["study_id"].astype(str) == study_id])
    for fm in master_runs:
        runs = fm.task.runs()
        samples = master_samples(crops.dataset, usable, None, [study_id], runs)  # one study, or none
        if not any(samples.values()):
            return None
        item = join_groups(study_id, {g: crops.grid(kept[0], GRADE_GROUPS[g], crop_settings(runs[g].config().data))
                                      for g, kept in samples.items()})
        batch = {key: value[None].to(device) for key, value in item.items() if isinstance(value, torch.Tensor)}
        run_probs = np.mean([master_probabilities(network, batch) for network in fm.networks.values()],
                            axis=0)  # (5, 5, 3)
        total += calibrated(run_probs, CONDITIONS, item["present_spinal"].numpy()[:, 0], calibrations[fm.run.path])
        count += 1
    return total / count


def run_calibrations(runs: dict[str, list[FoldModels]]) -> dict[Path, Calibration]:
    """Each run's ``calibration.json`` (fitted on its out-of-fold predictions), or no change without one."""
    out = {}
    for group_runs in runs.values():
        for fm in group_runs:
            path = fm.run.path / CALIBRATION_FILE
            out[fm.run.path] = Calibration.load(path) if path.is_file() else Calibration()
    return out


def calibrated(probs: np.ndarray, conditions, spinal_rows: np.ndarray, calibration: Calibration) -> np.ndarray:
    """``(5, C, 3)`` probabilities of one run (``conditions`` in its columns) with each condition's temperature,
    then, when the first column is the spinal canal, the any_severe scale over the levels ``spinal_rows``
    graded."""
    out = probs.copy()
    for j, condition in enumerate(conditions):
        out[:, j] = calibration.apply(condition, out[:, j])
    if conditions[0] == CONDITIONS[0]:
        out[spinal_rows, 0] = calibration.apply_study_spinal(out[spinal_rows, 0])
    return out


def _usable_coords(study: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose series exists in the study and has the role of the condition's group."""
    roles = CONDITION_ROLE
    keep = []
    for row in rows.itertuples():
        series = study.series.get(str(row.series_id))
        keep.append(series is not None and int(row.stack) < len(series.stacks) and int(row.stack) >= 0
                    and series.role == roles.get(row.condition))
    return rows[np.asarray(keep, dtype=bool)] if len(rows) else rows


def classify(dataset: Any, coords: pd.DataFrame, run_paths: list[str | Path], *,
             study_ids: list[str] | None = None, device: str | None = None,
             progress: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The submission (``row_id, normal_mild, moderate, severe``; 25 rows per study) and the warnings."""
    from rich.progress import Progress

    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    runs = load_grade_runs(run_paths, torch_device)
    priors = run_priors(runs)
    calibrations = run_calibrations(runs)
    cache_mb = max(fm.task.config.data.cache_mb for group_runs in runs.values() for fm in group_runs)
    ids = [str(s) for s in (study_ids if study_ids is not None else dataset.study_ids)]
    graded_conditions = {c for name, group_runs in runs.items() if name != MASTER and group_runs
                         for c in GRADE_GROUPS[name].conditions}
    warnings = [f"no grading run for {name}; its rows are the training priors"
                for name, group in GRADE_GROUPS.items()
                if not runs[MASTER] and not set(group.conditions) & graded_conditions and not is_cross_view(group)]
    unknown = sorted(set(coords["study_id"].astype(str)) - set(ids))
    if unknown:
        warnings.append(f"coords name {len(unknown)} studies not classified here (e.g. {unknown[0]})")
    warnings += coords_warnings(coords, ids)
    rows = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("classifying", total=len(ids))
        for study_id in ids:
            study = dataset.study(study_id)
            crops = StudyCrops(dataset, cache_mb)
            graded: dict[str, list[np.ndarray]] = {}
            for name, group_runs in runs.items():
                if name == MASTER or not group_runs:
                    continue
                group = GRADE_GROUPS[name]
                points = points_for_group(dataset, coords, group, [study_id])
                (sample,) = make_grade_samples(points, None, [study_id], group, need_points=False)
                sample, notes = _usable_points(study, sample, group)
                warnings += notes
                probs = grade_study(crops, sample, group, group_runs, torch_device, calibrations)
                for i, level in enumerate(LEVELS):
                    for k, condition in enumerate(group.conditions):
                        graded.setdefault(target_name(condition, level), []).append(probs[i, k])
            if runs[MASTER]:
                master = grade_master_study(crops, coords, study_id, runs[MASTER], torch_device, calibrations)
                if master is not None:
                    for i, level in enumerate(LEVELS):
                        for j, condition in enumerate(CONDITIONS):
                            graded.setdefault(target_name(condition, level), []).append(master[i, j])
            fallback = []
            for target in TARGETS:
                usable = [p for p in graded.get(target, []) if np.isfinite(p).all()]
                if usable:
                    p = np.mean(usable, axis=0)
                else:
                    if target in graded:
                        fallback.append(target)
                    p = priors.loc[target].to_numpy(dtype=np.float64)
                p = p / p.sum()
                condition, level = TARGET_INDEX[target]
                rows.append([row_id(study_id, condition, level), *p.tolist()])
            if fallback:
                warnings.append(f"study {study_id}: {len(fallback)} rows without a usable point got the training "
                                f"priors ({', '.join(fallback[:3])}{', ...' if len(fallback) > 3 else ''})")
            bar.advance(task)
    submission = pd.DataFrame(rows, columns=["row_id", *SUBMISSION_COLUMNS])
    if len(submission) != len(TARGETS) * len(ids) or not np.isfinite(submission[list(SUBMISSION_COLUMNS)]).all().all():
        raise ClassifyError("internal error: the submission lacks rows or holds non-finite values")
    return submission, warnings
