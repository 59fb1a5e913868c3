"""Quality of stage 2: train the small CPU graders on one synthetic store, grade unseen studies of another.

Trains ``pkg:cpu/grade_{spinal,foraminal,subarticular}`` (``spinemodels/configs/cpu/``) (fold 0 of 5) on ``--train-store``,
classifies every study of ``--eval-store`` around ``--coords`` (the located points of ``spine locate``;
without it, the eval store's labelled points, reported as such), and scores the submission with the
competition metric against the eval store's targets, next to the class-prior baseline learned from the
training store. Also reports inference seconds per study.

    .venv/bin/python bench/bench_grading.py --train-store bench/out/train.zarr \\
        --eval-store bench/out/eval.zarr --coords bench/out/eval_coords.csv --out bench/out/grading

Runs already trained in ``--out`` are reused (delete them to retrain). ``--seeds 42 1 2`` trains one set of
graders per ``train.seed`` (each seed also draws its own fold split) and reports every metric part as the
mean and standard deviation over seeds, next to the class priors of the training store on the same
studies. ``--master`` also trains the master model on top of each seed's graders; ``--axial`` the cross-view
spinal grader (scored with and without it); ``--recalibrate`` fits reused runs' calibration again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import spinedata
from spinedata.metric import SCORE_KEYS, priors_submission, score
from spinemodels.catalog import load_config
from spinemodels.data.grading import WORLD
from spinemodels.inference.classify import classify
from spinemodels.rundir import RunDir
from spinemodels.tasks.grading import calibrate_run
from spinemodels.training import train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [f"pkg:cpu/grade_{name}" for name in ("spinal", "foraminal", "subarticular")]


MASTER_CONFIG = "pkg:cpu/grade_master"
AXIAL_CONFIG = "pkg:cpu/grade_spinal_axial"


def train_runs(train_store: str, out: Path, overrides: list[str], master: bool, axial: bool,
               recalibrate: bool = False) -> list[Path]:
    """The three graders (the cross-view spinal grader, the master model on top) trained into ``out``, or
    reused when already there (``recalibrate``: their calibration.json fitted again with the current code)."""
    runs = []
    for config_path in CONFIGS + ([MASTER_CONFIG] if master else []) + ([AXIAL_CONFIG] if axial else []):
        run_dir = out / config_path.rsplit("/", 1)[-1]
        extra = [f"model.{r.name.removeprefix('grade_')}_run={r}" for r in runs[:3]] if config_path == MASTER_CONFIG \
            else []
        if RunDir(run_dir).trained_folds():
            print(f"reusing {run_dir}")
            if recalibrate:
                calibrate_run(RunDir(run_dir))
        else:
            start = time.perf_counter()
            train(load_config(config_path, overrides + extra), train_store, run_dir, progress=False)
            print(f"trained {config_path.stem} in {time.perf_counter() - start:.0f} s")
        runs.append(run_dir)
    return runs


def grade(eval_ds, coords: pd.DataFrame, runs: list[Path]) -> tuple[pd.DataFrame, float, list[str]]:
    start = time.perf_counter()
    submission, warnings = classify(eval_ds, coords, runs, device="cpu", progress=False)
    return submission, (time.perf_counter() - start) / len(eval_ds.study_ids), warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-store", required=True)
    parser.add_argument("--eval-store", required=True)
    parser.add_argument("--coords", default=None, help="located points of the eval studies (spine locate)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42],
                        help="train.seed of each training run (one folder each: OUT/seed_N); mean and spread")
    parser.add_argument("--master", action="store_true", help="also train the master model and grade with it")
    parser.add_argument("--axial", action="store_true",
                        help="also train the cross-view spinal grader (Axial T2); scored with and without it")
    parser.add_argument("--recalibrate", action="store_true",
                        help="fit the calibration of reused runs again (as training now would)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--point-noise-mm", type=float, default=0.0,
                        help="add N(0, sigma) mm to every point (x, y, z): stage-1 errors without stage 1")
    parser.add_argument("--tag", default="", help="suffix of the submission/result files")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_ds, eval_ds = spinedata.open_dataset(args.train_store), spinedata.open_dataset(args.eval_store)
    if args.coords:
        coords, points = pd.read_csv(args.coords, dtype={"study_id": str, "series_id": str}), "located"
    else:
        coords, points = eval_ds.labels, "labelled (not located)"
    if args.point_noise_mm > 0:
        noise = np.random.default_rng(0).normal(0.0, args.point_noise_mm, size=(len(coords), 3))
        coords = coords.assign(**{axis: coords[axis] + noise[:, j] for j, axis in enumerate(WORLD)})
        points += f" + N(0, {args.point_noise_mm:g} mm) per axis"
    baseline = score(priors_submission(train_ds.targets, eval_ds.study_ids), eval_ds.targets)
    results, seconds, without_axial = {}, [], {}
    for seed in args.seeds:
        runs = train_runs(args.train_store, out / f"seed_{seed}", [*args.overrides, f"train.seed={seed}"],
                          args.master, args.axial, args.recalibrate)
        submission, per_study, warnings = grade(eval_ds, coords, runs)
        submission.to_csv(out / f"seed_{seed}" / f"submission{args.tag}.csv", index=False)
        results[seed], seconds = score(submission, eval_ds.targets), seconds + [per_study]
        print(f"seed {seed}: score {results[seed]['score']:.4f}, warnings {len(warnings)}"
              + (f" (first: {warnings[0]})" if warnings else ""))
        if args.axial:
            without_axial[seed] = score(grade(eval_ds, coords, runs[:-1])[0], eval_ds.targets)
            print(f"seed {seed} without the axial view: score {without_axial[seed]['score']:.4f}, "
                  f"spinal {without_axial[seed]['spinal_canal_stenosis']:.4f} "
                  f"(with: {results[seed]['spinal_canal_stenosis']:.4f})")
    n_eval = len(eval_ds.study_ids)
    print(f"train studies: {len(train_ds.study_ids)} (fold 0 trained), eval studies: {n_eval}, points: {points}, "
          f"seeds: {args.seeds}, master: {args.master}, torch threads: {torch.get_num_threads()}")
    print("| part | graders, mean (sd) over seeds | each seed | class priors | mean / priors |")
    print("|---|---|---|---|---|")
    for key in SCORE_KEYS:
        values = np.array([results[seed][key] for seed in args.seeds])
        each = " / ".join(f"{v:.3f}" for v in values)
        print(f"| {key} | {values.mean():.4f} ({values.std(ddof=1) if len(values) > 1 else 0.0:.4f}) | {each} "
              f"| {baseline[key]:.4f} | {values.mean() / baseline[key]:.2f} |")
    print(f"inference: {np.median(seconds):.2f} s/study on CPU (graders{' + master' if args.master else ''}, "
          "crops included, median over seeds)")
    (out / f"result{args.tag}.json").write_text(json.dumps(
        {"models": {str(k): v for k, v in results.items()}, "priors": baseline, "points": points,
         "seconds_per_study": seconds, "n_eval": n_eval, "seeds": args.seeds, "master": args.master,
         "without_axial": {str(k): v for k, v in without_axial.items()}}, indent=1))


if __name__ == "__main__":
    main()
