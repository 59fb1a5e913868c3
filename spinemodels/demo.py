"""The whole job in one call (``spine demo``): synth -> ingest -> train -> locate -> classify -> score -> pictures.

Each step is one library call (``spinedata.synth.generate``, ``spinedata.ingest.ingest``,
``spinemodels.training.train``, ``locate``, ``classify``, ``spinedata.metric.score``, ``render_study``),
announced with the ``spine ...`` command that does the same, so the job can be repeated by hand on real data.
Training uses the small CPU configs shipped in the package (``pkg:cpu/*``); evaluation is on the synthetic
*test* studies, which no model saw, against the generator's exact truth (``synth_truth.csv``).

Layout of the work directory::

    DIR/data/            competition layout written by `spine synth` (+ synth_truth.csv)
    DIR/train.zarr       DIR/test.zarr       stores written by `spine ingest`
    DIR/runs/<name>/     one run directory per model (accepted by `spine locate` / `spine classify`)
    DIR/coords.csv       DIR/submission.csv  DIR/test_truth.csv
    DIR/pictures/        `spine show` of test studies
    DIR/summary.json     scores, localisation errors, timings, settings
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spinedata.conditions import CONDITION_GROUPS, SCORED_GROUPS
from spinedata.constants import SEVERITY_CODE, TARGETS, target_name
from spinedata.ingest import default_workers
from spinemodels.errors import ConfigError

CONFIGS = "pkg:cpu/"
"""The small CPU configs the demo trains: ``pkg:cpu/NAME``, shipped inside the package
(``spinemodels.config.packaged_config``), so the demo runs from any installed wheel."""

STAGE_ONE = ("slice_finder", "keypoints", "fine_keypoints")
GRADERS = ("grade_spinal", "grade_foraminal", "grade_subarticular", "grade_spinal_axial")
"""The three graders and the spinal canal's second view (Axial T2), which the master model also takes."""
MASTER = "grade_master"

DEMO_EPOCHS: dict[str, int] = {
    "slice_finder": 16,
    "keypoints": 24,
    "fine_keypoints": 20,
    "grade_spinal": 20,
    "grade_foraminal": 20,
    "grade_subarticular": 20,
    "grade_spinal_axial": 20,
    "grade_master": 3,
}
"""Epochs per model in the default demo (80 training studies); why these: docs/benchmarks.md, "Figures once
kept in docstrings"."""

QUICK_EPOCHS = 1
QUICK_STUDIES, QUICK_TEST_STUDIES, QUICK_MATRIX = 6, 2, 128
"""``quick``: the smallest job that runs every step (tests, a smoke check)."""

DEFAULT_MATRIX = 192
"""In-plane matrix of every synthetic series in the demo: the small models resize their inputs to less anyway,
and smaller DICOM files make synth, ingest and loading faster than the generator's default matrices."""

LOCATION_GROUPS = {name: CONDITION_GROUPS[name].conditions for name in SCORED_GROUPS}

WORK_ITEMS = ("data", "train.zarr", "test.zarr", "runs", "pictures", "coords.csv", "submission.csv",
              "test_truth.csv", "summary.json")
"""What a demo writes in its work directory (and clears before running again there)."""

N_PICTURES = 2


@dataclass(frozen=True)
class DemoSettings:
    """What the demo does. ``epochs`` overrides every model's epochs (None: :data:`DEMO_EPOCHS`)."""

    workdir: Path
    studies: int = 80
    test_studies: int = 40
    seed: int = 0
    matrix: int = DEFAULT_MATRIX
    epochs: int | None = None
    master: bool = True
    workers: int | None = None
    device: str | None = None
    progress: bool = False

    @classmethod
    def quick(cls, workdir: Path, **changes) -> DemoSettings:
        base = {"studies": QUICK_STUDIES, "test_studies": QUICK_TEST_STUDIES, "matrix": QUICK_MATRIX,
                "epochs": QUICK_EPOCHS}
        return cls(workdir=workdir, **{**base, **changes})

    def __post_init__(self) -> None:
        if self.studies < 5:
            raise ConfigError(f"the demo needs at least 5 training studies (5 folds), got --studies {self.studies}")
        if self.test_studies < 1:
            raise ConfigError(f"the demo needs at least 1 test study, got --test-studies {self.test_studies}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")

    def epochs_of(self, name: str) -> int:
        return self.epochs if self.epochs is not None else DEMO_EPOCHS[name]

    def models(self) -> list[str]:
        """The models the demo trains, in order (the master last, when asked for)."""
        return [*STAGE_ONE, *GRADERS] + ([MASTER] if self.master else [])


@dataclass
class StepRecord:
    name: str
    command: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time of this process and its finished children (loader and synth/ingest workers) in the step:
    unlike wall time, it hardly depends on what else runs on the machine."""


@dataclass
class DemoResult:
    workdir: Path
    summary: dict
    steps: list[StepRecord] = field(default_factory=list)


def _command(*parts: object) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


def prepare_workdir(workdir: Path) -> None:
    """Create ``workdir``, or clear what an earlier demo wrote there; refuse a folder holding anything else."""
    workdir.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in workdir.iterdir() if p.name not in WORK_ITEMS)
    if foreign:
        raise ConfigError(f"{workdir} holds files the demo did not write ({', '.join(foreign[:5])}); "
                          "give an empty or new --workdir")
    for name in WORK_ITEMS:
        path = workdir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def truth_table(synth_truth: pd.DataFrame, split: str) -> pd.DataFrame:
    """``synth_truth.csv`` rows of one split -> train.csv form (study_id + 25 targets, severity names)."""
    rows = synth_truth[synth_truth["split"] == split]
    if rows.empty:
        raise ConfigError(f"synth_truth.csv has no rows of split {split!r}")
    wide = rows.assign(target=[target_name(c, lv) for c, lv in zip(rows["condition"], rows["level"], strict=True)])
    table = wide.pivot(index="study_id", columns="target", values="severity").reindex(columns=list(TARGETS))
    table = table.reset_index()
    table["study_id"] = table["study_id"].astype(str)
    return table


def localisation_errors(coords: pd.DataFrame, synth_truth: pd.DataFrame) -> dict:
    """3D distance (mm) of every located point to its true position; median and 95th percentile per group."""
    truth = synth_truth.assign(study_id=synth_truth["study_id"].astype(str))
    merged = coords.assign(study_id=coords["study_id"].astype(str)).merge(
        truth, on=["study_id", "condition", "level"], suffixes=("", "_true"))
    pred = merged[["world_x", "world_y", "world_z"]].to_numpy(float)
    true = merged[["world_x_true", "world_y_true", "world_z_true"]].to_numpy(float)
    errors = np.linalg.norm(pred - true, axis=1)
    out: dict = {"points": int(len(merged)), "points_without_truth": int(len(coords) - len(merged))}
    for group, conditions in LOCATION_GROUPS.items():
        values = errors[merged["condition"].isin(conditions).to_numpy()]
        out[f"{group}_median_mm"] = float(np.median(values)) if len(values) else math.nan
        out[f"{group}_p95_mm"] = float(np.quantile(values, 0.95)) if len(values) else math.nan
        out[f"{group}_within_5mm"] = float(np.mean(values <= 5.0)) if len(values) else math.nan
    return out


def _severity_accuracy(submission: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Share of scored rows whose most probable class is the true one."""
    long = truth.melt(id_vars="study_id", var_name="target", value_name="severity").dropna()
    long["row_id"] = long["study_id"].astype(str) + "_" + long["target"]
    merged = long.merge(submission, on="row_id")
    predicted = merged[["normal_mild", "moderate", "severe"]].to_numpy(float).argmax(axis=1)
    true = merged["severity"].map(SEVERITY_CODE).to_numpy()
    return float(np.mean(predicted == true)) if len(merged) else math.nan


@dataclass(frozen=True)
class DemoPaths:
    """Where each step of a demo in ``workdir`` writes (``WORK_ITEMS``)."""

    work: Path

    @property
    def data(self) -> Path:
        return self.work / "data"

    def store(self, split: str) -> Path:
        return self.work / f"{split}.zarr"

    def run(self, name: str) -> Path:
        return self.work / "runs" / name

    def picture(self, study_id: str) -> Path:
        return self.work / "pictures" / f"study_{study_id}.png"

    def file(self, name: str) -> Path:
        """``coords``, ``submission``, ``truth`` (test_truth.csv) or ``summary`` (summary.json)."""
        return self.work / {"coords": "coords.csv", "submission": "submission.csv", "truth": "test_truth.csv",
                            "summary": "summary.json"}[name]


class Steps:
    """Runs the demo's steps: each announced with its ``spine`` command line, timed (wall and CPU), recorded."""

    def __init__(self, announce: Callable[[str, str], None] | None, finished: Callable[[StepRecord], None] | None):
        self.announce, self.finished, self.records = announce, finished, []

    def run(self, name: str, command: list[object], action: Callable[[], object]):
        """``action()`` as the step ``name``; ``command``: the words after ``spine``."""
        shown = _command("spine", *command)
        if self.announce:
            self.announce(name, shown)
        start, cpu = time.perf_counter(), _cpu_seconds()
        value = action()
        record = StepRecord(name, shown, time.perf_counter() - start, _cpu_seconds() - cpu)
        self.records.append(record)
        if self.finished:
            self.finished(record)
        return value


def _options(*pairs: tuple[str, object]) -> list[object]:
    """``[option, value, ...]`` of ``(option, value)`` pairs: repeated options (``--model``, ``--set``)."""
    return [word for pair in pairs for word in pair]


def synth_step(steps: Steps, settings: DemoSettings, paths: DemoPaths):
    """The synthetic studies, both splits, in the competition layout (``spine synth``)."""
    from spinedata.synth import generate

    workers = settings.workers or default_workers()
    return steps.run("synth", ["synth", paths.data, "--studies", settings.studies, "--test-studies",
                               settings.test_studies, "--seed", settings.seed, "--matrix", settings.matrix,
                               "--workers", workers],
                     lambda: generate(paths.data, settings.studies, settings.seed, n_test_studies=settings.test_studies,
                                      workers=workers, sagittal_matrices=(settings.matrix,),
                                      axial_matrices=(settings.matrix,)))


def ingest_step(steps: Steps, settings: DemoSettings, paths: DemoPaths, split: str) -> None:
    """One split into its store (``spine ingest``); a split of which no study was written is an error."""
    from spinedata.ingest import ingest

    store = paths.store(split)
    done = steps.run(f"ingest {split}", ["ingest", paths.data, store, "--split", split],
                     lambda: ingest(paths.data, store, split=split, workers=settings.workers))
    if done.n_complete == 0:
        raise ConfigError(f"ingest of the {split} split wrote no study; see {store}/ingest_report.csv")


def train_steps(steps: Steps, settings: DemoSettings, paths: DemoPaths, device: str) -> dict[str, Path]:
    """Every model of the demo from its CPU config (``spine train``); the master names the graders' runs."""
    from spinemodels.catalog import load_config
    from spinemodels.training import train

    trained: dict[str, Path] = {}
    for name in settings.models():
        config, out = CONFIGS + name, paths.run(name)
        overrides = [f"train.epochs={settings.epochs_of(name)}"]
        if name == MASTER:
            overrides += [f"model.{g.removeprefix('grade_')}_run={trained[g]}" for g in GRADERS]
        steps.run(f"train {name}", ["train", config, "--data", paths.store("train"), "--out", out,
                                    *_options(*(("--set", item) for item in overrides))],
                  lambda config=config, overrides=overrides, out=out: train(
                      load_config(config, overrides), str(paths.store("train")), out, progress=settings.progress,
                      device=device))
        trained[name] = out
    return trained


def run_demo(settings: DemoSettings, announce: Callable[[str, str], None] | None = None,
             finished: Callable[[StepRecord], None] | None = None) -> DemoResult:
    """Run every step; ``announce(name, command)`` before each, ``finished(record)`` after. Returns the summary.

    Raises ``ConfigError`` for unusable settings or a work directory holding foreign files.
    """
    import torch

    import spinedata
    from spinedata.metric import SCORE_KEYS, priors_submission, score
    from spinedata.pictures import render_study
    from spinemodels.inference.classify import classify
    from spinemodels.inference.locate import locate

    paths = DemoPaths(Path(settings.workdir))
    prepare_workdir(paths.work)
    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    steps = Steps(announce, finished)
    started = time.perf_counter()

    synth = synth_step(steps, settings, paths)
    for split in ("train", "test"):
        ingest_step(steps, settings, paths, split)
    trained = train_steps(steps, settings, paths, device)

    test_store, coords_csv, submission_csv = paths.store("test"), paths.file("coords"), paths.file("submission")
    test_ds = spinedata.open_dataset(str(test_store))
    stage_one = [trained[n] for n in STAGE_ONE]
    coords, locate_warnings = steps.run(
        "locate", ["locate", test_store, *_options(*(("--model", r) for r in stage_one)), "--out", coords_csv],
        lambda: locate(test_ds, stage_one, device=device, progress=settings.progress))
    coords.to_csv(coords_csv, index=False)
    graders = [trained[n] for n in settings.models() if n not in STAGE_ONE]
    submission, classify_warnings = steps.run(
        "classify", ["classify", test_store, "--coords", coords_csv, *_options(*(("--model", r) for r in graders)),
                     "--out", submission_csv],
        lambda: classify(test_ds, coords, graders, device=device, progress=settings.progress))
    submission.to_csv(submission_csv, index=False)

    synth_truth = pd.read_csv(paths.data / "synth_truth.csv", dtype={"study_id": str})
    truth, truth_csv = truth_table(synth_truth, "test"), paths.file("truth")
    truth.to_csv(truth_csv, index=False)

    def scores() -> dict:
        train_targets = spinedata.open_dataset(str(paths.store("train"))).targets
        model = score(submission, truth)
        baseline = score(priors_submission(train_targets, test_ds.study_ids), truth)
        return {"model": {k: model[k] for k in SCORE_KEYS}, "class_priors": {k: baseline[k] for k in SCORE_KEYS},
                "argmax_accuracy": _severity_accuracy(submission, truth)}

    scored = steps.run("score", ["score", submission_csv, "--truth", truth_csv], scores)
    errors = localisation_errors(coords, synth_truth[synth_truth["split"] == "test"])
    written = []
    for study_id in [str(s) for s in test_ds.study_ids[:N_PICTURES]]:
        png = paths.picture(study_id)
        steps.run(f"show {study_id}", ["show", test_store, study_id, "--coords", coords_csv, "--submission",
                                       submission_csv, "--labels", paths.data / "synth_truth.csv", "--truth",
                                       truth_csv, "--out", png],
                  lambda study_id=study_id, png=png: written.append(render_study(
                      test_ds, study_id, png, coords=coords, labels=synth_truth, submission=submission, truth=truth)))

    records = steps.records
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "epochs": {name: settings.epochs_of(name) for name in settings.models()},
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {default_workers()} cores, Python {platform.python_version()}",
        "train_studies": len(synth.train_study_ids),
        "test_studies": len(test_ds.study_ids),
        "scores": scored,
        "localisation": errors,
        "warnings": {"locate": len(locate_warnings), "classify": len(classify_warnings)},
        "runs": {name: str(path) for name, path in trained.items()},
        "files": {"coords": str(coords_csv), "submission": str(submission_csv), "truth": str(truth_csv),
                  "pictures": [str(p) for p in written]},
        "timings_s": {r.name: round(r.seconds, 2) for r in records},
        "cpu_s": {r.name: round(r.cpu_seconds, 2) for r in records},
        "commands": [r.command for r in records],
        "total_s": round(time.perf_counter() - started, 2),
        "total_cpu_s": round(sum(r.cpu_seconds for r in records), 2),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    paths.file("summary").write_text(json.dumps(summary, indent=1))
    return DemoResult(paths.work, summary, records)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
