"""Write synthetic studies in the competition's folder layout, with their CSVs and the ground truth.

``generate`` draws every study from its own random stream (``seed``, study index), so a dataset is the
same whatever the number of workers, and a study does not change when more studies are asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from spinedata.conditions import CONDITION_ROLE
from spinedata.constants import (
    CONDITIONS,
    LEVELS,
    ROLE_AXIAL_T2,
    ROLE_SAG_T2,
    ROLES,
    SEVERITIES,
    SUBMISSION_COLUMNS,
    TARGETS,
    row_id,
)
from spinedata.errors import OptionError
from spinedata.synth.acquisition import SeriesPlan, plan_series
from spinedata.synth.anatomy import LEVEL_DISC, sample_spine
from spinedata.synth.dicomwrite import write_series
from spinedata.synth.disease import sample_severities
from spinedata.synth.options import SynthOptions
from spinedata.synth.render import render_series

TRUTH_FILE = "synth_truth.csv"
FLAWS_FILE = "synth_flaws.csv"
TRUTH_COLUMNS = ("study_id", "split", "condition", "level", "world_x", "world_y", "world_z", "severity")
LABEL_COLUMNS = ("study_id", "series_id", "instance_number", "condition", "level", "x", "y")
SERIES_COLUMNS = ("study_id", "series_id", "series_description")
FLAW_COLUMNS = ("study_id", "flaw", "detail")
STUDIES_FILE = "synth_studies.csv"
STUDY_COLUMNS = ("study_id", "split", "lordosis_deg", "sacral_slope_deg", "rotation_x_deg", "rotation_y_deg",
                 "rotation_z_deg", "shift_x", "shift_y", "shift_z", "sagittal_t2_contrast", "axial_stacks")
ID_STREAM = 7919
"""Second key of the random stream that draws study and series ids (study ``i`` draws from ``(seed, i)``)."""
GRADE_NOISE_STREAM = 104729
"""Third key of the random stream (``(seed, i, this)``) that draws which written grades are wrong: the other
draws of a study do not change with ``grade_noise_fraction``."""
MAX_SERIES = len(ROLES) + 1
"""Series per study at most: one per role plus one extra."""


@dataclass
class StudyRecord:
    """What one generated study contributes to the CSVs."""

    study_id: str
    split: str
    series: list[tuple[str, str]] = field(default_factory=list)  # (series_id, description)
    labels: list[tuple] = field(default_factory=list)  # rows of LABEL_COLUMNS
    truth: list[tuple] = field(default_factory=list)  # rows of TRUTH_COLUMNS
    targets: dict[str, str] = field(default_factory=dict)
    flaws: list[tuple] = field(default_factory=list)
    study: tuple = ()  # a row of STUDY_COLUMNS
    n_files: int = 0


@dataclass(frozen=True)
class SynthResult:
    out_dir: Path
    train_study_ids: list[str]
    test_study_ids: list[str]
    n_series: int
    n_files: int
    seconds: float


def project_to_series(plan: SeriesPlan, point: np.ndarray) -> tuple[int, float, float, float]:
    """The slice of ``plan`` nearest a patient-space point: ``(instance_number, x, y, distance_mm)``.

    ``x`` is the column and ``y`` the row (floats) of the point's projection onto that slice. Slices whose
    image does not contain the projection are used only when none does.
    """
    best, best_key = None, None
    for instance, k, i in plan.slices():
        stack = plan.stacks[k]
        offset = point - stack.positions[i]
        distance = float(np.dot(offset, stack.normal))
        drow, dcol = stack.pixel_spacing
        x = float(np.dot(offset, stack.row_dir) / dcol)
        y = float(np.dot(offset, stack.col_dir) / drow)
        inside = -0.5 <= x <= stack.cols - 0.5 and -0.5 <= y <= stack.rows - 0.5
        key = (not inside, abs(distance))
        if best_key is None or key < best_key:
            best, best_key = (instance, x, y, distance), key
    return best


def _new_ids(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        candidate = str(int(rng.integers(10**6, 4 * 10**9)))
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def make_study(root: Path, study_id: str, split: str, seed: int, index: int, options: SynthOptions,
               series_ids: tuple[str, ...]) -> StudyRecord:
    """Draw, render and write one study under ``root/<split>_images/<study_id>/``.

    ``series_ids``: ``MAX_SERIES`` ids unique in the dataset, used in order for the study's series.
    """
    rng = np.random.default_rng([seed, index])
    severities = sample_severities(rng, options.class_balance)
    model = sample_spine(rng, severities, options.max_rotation_deg)
    record = StudyRecord(study_id=study_id, split=split)

    # flaws of the real data, always drawn in the same order so they do not change the other draws
    u_missing, u_extra, u_shift = rng.random(3)
    missing_role, extra_role = ROLES[int(rng.integers(3))], ROLES[int(rng.integers(3))]
    shift = int(rng.choice([-1, 1]))
    missing = u_missing < options.missing_series_fraction
    roles = [role for role in ROLES if not (missing and role == missing_role)]
    if missing:
        record.flaws.append((study_id, "missing_series", missing_role))
    if u_extra < options.extra_series_fraction and extra_role in roles:
        roles.append(extra_role)
        record.flaws.append((study_id, "extra_series", extra_role))
    off_by_one = split == "train" and u_shift < options.off_by_one_fraction
    if off_by_one:
        record.flaws.append((study_id, "off_by_one", f"{shift:+d} level ({'head' if shift > 0 else 'feet'})"))

    plans = [plan_series(rng, model, options, role, sid, number + 1)
             for number, (role, sid) in enumerate(zip(roles, series_ids[: len(roles)], strict=True))]
    folder = root / f"{split}_images" / study_id
    for plan in plans:
        pixels = render_series(model, plan, rng)
        record.n_files += write_series(folder / plan.series_id, plan, study_id, pixels, rng)
        record.series.append((plan.series_id, plan.description))

    sag_t2 = next((p.contrast for p in plans if p.description == ROLE_SAG_T2), "")
    axial = next((len(p.stacks) for p in plans if p.description == ROLE_AXIAL_T2), 0)
    record.study = (study_id, split, model.lordosis_deg, model.sacral_slope_deg, *model.rotation_deg, *model.shift,
                    sag_t2, axial)
    truth = model.truth_points()
    discs = {lv: LEVEL_DISC[lv] - shift for lv in LEVELS} if off_by_one else None  # disc index grows footward
    labelled = model.truth_points(discs) if off_by_one else truth
    noise_rng = np.random.default_rng([seed, index, GRADE_NOISE_STREAM])
    for (condition, level), point in truth.items():
        severity = severities.name(condition, level)
        record.truth.append((study_id, split, condition, level, *map(float, point), severity))
        record.targets[f"{condition}|{level}"] = _written_grade(record, noise_rng, options, condition, level,
                                                                severity)
        if split != "train":
            continue
        plan = next((p for p in plans if p.description == CONDITION_ROLE[condition]), None)
        if plan is None:
            continue
        instance, x, y, _ = project_to_series(plan, labelled[(condition, level)])
        record.labels.append((study_id, plan.series_id, instance, condition, level, x, y))
    return record


def _written_grade(record: StudyRecord, rng: np.random.Generator, options: SynthOptions, condition: str,
                   level: str, severity: str) -> str:
    """The grade train.csv gets: the true one, or (training studies, ``grade_noise_fraction``) another one,
    recorded as a ``wrong_grade`` flaw."""
    u, pick = rng.random(), int(rng.integers(2))
    if record.split != "train" or u >= options.grade_noise_fraction:
        return severity
    wrong = [s for s in SEVERITIES if s != severity][pick]
    record.flaws.append((record.study_id, "wrong_grade", f"{condition} {level}: {severity} written as {wrong}"))
    return wrong


def _write_csvs(root: Path, records: list[StudyRecord], with_test: bool) -> None:
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    rows = [{"study_id": r.study_id, **{t: r.targets[f"{c}|{lv}"] for t, (c, lv) in
                                      zip(TARGETS, [(c, lv) for c in CONDITIONS for lv in LEVELS], strict=True)}}
            for r in train]
    pd.DataFrame(rows, columns=["study_id", *TARGETS]).to_csv(root / "train.csv", index=False)
    pd.DataFrame([row for r in train for row in r.labels], columns=list(LABEL_COLUMNS)).to_csv(
        root / "train_label_coordinates.csv", index=False)
    pd.DataFrame([(r.study_id, *s) for r in train for s in r.series], columns=list(SERIES_COLUMNS)).to_csv(
        root / "train_series_descriptions.csv", index=False)
    pd.DataFrame([row for r in records for row in r.truth], columns=list(TRUTH_COLUMNS)).to_csv(
        root / TRUTH_FILE, index=False)
    pd.DataFrame([row for r in records for row in r.flaws], columns=list(FLAW_COLUMNS)).to_csv(
        root / FLAWS_FILE, index=False)
    pd.DataFrame([r.study for r in records], columns=list(STUDY_COLUMNS)).to_csv(root / STUDIES_FILE, index=False)
    if with_test:
        pd.DataFrame([(r.study_id, *s) for r in test for s in r.series], columns=list(SERIES_COLUMNS)).to_csv(
            root / "test_series_descriptions.csv", index=False)
        submission = [(row_id(r.study_id, c, lv), 1 / 3, 1 / 3, 1 / 3) for r in test for c in CONDITIONS for lv in LEVELS]
        pd.DataFrame(submission, columns=["row_id", *SUBMISSION_COLUMNS]).to_csv(
            root / "sample_submission.csv", index=False)


def generate(out_dir: str | Path, n_studies: int, seed: int, *, n_test_studies: int = 0,
             options: SynthOptions | None = None, workers: int = 1,
             progress: Callable[[int, int], None] | None = None, **overrides) -> SynthResult:
    """Write ``n_studies`` training and ``n_test_studies`` test studies to ``out_dir``.

    ``options`` (or keyword overrides of its fields, e.g. ``off_by_one_fraction=0.1``) set the
    distributions; ``progress(done, total)`` is called after each study. Deterministic for a seed.
    """
    start = time.perf_counter()
    if n_studies < 0 or n_test_studies < 0 or n_studies + n_test_studies == 0:
        raise OptionError(f"ask for at least one study (got {n_studies} train, {n_test_studies} test)")
    unknown = set(overrides) - set(SynthOptions.names())
    if unknown:
        raise OptionError(f"unknown synth option(s) {sorted(unknown)}; known: {SynthOptions.names()}")
    options = replace(options or SynthOptions(), **overrides)
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()):
        raise OptionError(f"output folder {root} is not empty; choose a new folder or remove it first")
    root.mkdir(parents=True, exist_ok=True)
    id_rng, taken = np.random.default_rng([seed, ID_STREAM]), set()
    ids, series_ids = [], []
    for _ in range(n_studies + n_test_studies):  # study by study, so that more studies keep the earlier ids
        ids.extend(_new_ids(id_rng, 1, taken))
        series_ids.append(tuple(_new_ids(id_rng, MAX_SERIES, taken)))
    tasks = [(root, sid, "train" if i < n_studies else "test", seed, i, options, series_ids[i])
             for i, sid in enumerate(ids)]
    records: list[StudyRecord | None] = [None] * len(tasks)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(make_study, *task): i for i, task in enumerate(tasks)}
            for done, future in enumerate(as_completed(futures), start=1):
                records[futures[future]] = future.result()
                if progress:
                    progress(done, len(tasks))
    else:
        for i, task in enumerate(tasks):
            records[i] = make_study(*task)
            if progress:
                progress(i + 1, len(tasks))
    _write_csvs(root, records, n_test_studies > 0)
    return SynthResult(out_dir=root, train_study_ids=ids[:n_studies], test_study_ids=ids[n_studies:],
                       n_series=sum(len(r.series) for r in records), n_files=sum(r.n_files for r in records),
                       seconds=time.perf_counter() - start)
