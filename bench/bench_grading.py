"""Quality of stage 2: train the small CPU graders on one synthetic store, grade unseen studies of another.

Trains ``configs/cpu/grade_{spinal,foraminal,subarticular}.yaml`` (fold 0 of 5) on ``--train-store``,
classifies every study of ``--eval-store`` around ``--coords`` (the located points of ``spine locate``;
without it, the eval store's labelled points, reported as such), and scores the submission with the
competition metric against the eval store's targets, next to the class-prior baseline learned from the
training store. Also reports inference seconds per study.

    .venv/bin/python bench/bench_grading.py --train-store bench/out/train.zarr \\
        --eval-store bench/out/eval.zarr --coords bench/out/eval_coords.csv --out bench/out/grading

Runs already trained in ``--out`` are reused (delete them to retrain). ``--ensemble DIR`` (repeatable)
adds the graders trained in another such folder (e.g. with another ``--set train.seed=N``): their
probabilities are averaged with these (``spine classify`` with several runs of one grader).
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
from spinemodels.classify import classify
from spinemodels.config import load_config
from spinemodels.data.grading import WORLD
from spinemodels.rundir import RunDir
from spinemodels.training import train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [REPO / "configs" / "cpu" / f"grade_{name}.yaml" for name in ("spinal", "foraminal", "subarticular")]


def train_runs(train_store: str, out: Path, overrides: list[str]) -> list[Path]:
    runs = []
    for config_path in CONFIGS:
        run_dir = out / config_path.stem
        if RunDir(run_dir).trained_folds():
            print(f"reusing {run_dir}")
        else:
            start = time.perf_counter()
            train(load_config(config_path, overrides), train_store, run_dir, progress=False)
            print(f"trained {config_path.stem} in {time.perf_counter() - start:.0f} s")
        runs.append(run_dir)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-store", required=True)
    parser.add_argument("--eval-store", required=True)
    parser.add_argument("--coords", default=None, help="located points of the eval studies (spine locate)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--point-noise-mm", type=float, default=0.0,
                        help="add N(0, sigma) mm to every point (x, y, z): stage-1 errors without stage 1")
    parser.add_argument("--tag", default="", help="suffix of the submission/result files")
    parser.add_argument("--ensemble", action="append", default=[], type=Path,
                        help="another folder of trained graders whose predictions are averaged in")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = train_runs(args.train_store, out, args.overrides)
    for folder in args.ensemble:
        found = [folder / config.stem for config in CONFIGS]
        missing = [str(run) for run in found if not RunDir(run).trained_folds()]
        if missing:
            raise SystemExit(f"--ensemble {folder}: no trained run in {', '.join(missing)}")
        runs += found

    train_ds, eval_ds = spinedata.open_dataset(args.train_store), spinedata.open_dataset(args.eval_store)
    if args.coords:
        coords, points = pd.read_csv(args.coords, dtype={"study_id": str, "series_id": str}), "located"
    else:
        coords, points = eval_ds.labels, "labelled (not located)"
    if args.point_noise_mm > 0:
        noise = np.random.default_rng(0).normal(0.0, args.point_noise_mm, size=(len(coords), 3))
        coords = coords.assign(**{axis: coords[axis] + noise[:, j] for j, axis in enumerate(WORLD)})
        points += f" + N(0, {args.point_noise_mm:g} mm) per axis"
    start = time.perf_counter()
    submission, warnings = classify(eval_ds, coords, runs, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    submission.to_csv(out / f"submission{args.tag}.csv", index=False)
    n_eval = len(eval_ds.study_ids)
    model = score(submission, eval_ds.targets)
    baseline = score(priors_submission(train_ds.targets, eval_ds.study_ids), eval_ds.targets)
    print(f"train studies: {len(train_ds.study_ids)} (fold 0 trained), eval studies: {n_eval}, "
          f"points: {points}, torch threads: {torch.get_num_threads()}")
    print(f"warnings: {len(warnings)}" + (f" (first: {warnings[0]})" if warnings else ""))
    print("| part | graders | class priors | ratio |")
    print("|---|---|---|---|")
    for key in SCORE_KEYS:
        print(f"| {key} | {model[key]:.4f} | {baseline[key]:.4f} | {model[key] / baseline[key]:.2f} |")
    print(f"inference: {seconds / n_eval:.2f} s/study on CPU (3 graders, crops included)")
    (out / f"result{args.tag}.json").write_text(json.dumps({"model": model, "priors": baseline, "points": points,
                                                 "seconds_per_study": seconds / n_eval, "n_eval": n_eval,
                                                 "runs": [str(run) for run in runs]}, indent=1))


if __name__ == "__main__":
    main()
