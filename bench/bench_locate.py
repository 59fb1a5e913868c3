"""Stage-1 accuracy on synthetic studies: train the small CPU configs on one store, locate the points of
unseen studies (another synth seed) and compare them with the generator's exact truth (synth_truth.csv).

    .venv/bin/spine synth bench/out/synth_train --studies 48 --seed 11
    .venv/bin/spine synth bench/out/synth_eval --studies 20 --seed 12
    .venv/bin/spine ingest bench/out/synth_train bench/out/train.zarr
    .venv/bin/spine ingest bench/out/synth_eval bench/out/eval.zarr
    .venv/bin/python bench/bench_locate.py --train bench/out/train.zarr --eval bench/out/eval.zarr \
        --truth bench/out/synth_eval/synth_truth.csv --out bench/out/locate

Reports: training wall time, exact-slice rate of the spinal levels (the slice of the chosen stack nearest
to the true point), 3D point errors (mm) per condition group, as a markdown table. ``--skip-train`` reuses
the run directories under ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import spinedata
from spinedata.constants import CONDITIONS
from spinemodels.config import load_config
from spinemodels.locate import locate
from spinemodels.training import train

CONFIGS = {"finder": "configs/cpu/slice_finder.yaml", "keypoints": "configs/cpu/keypoints.yaml"}
GROUPS = {"spinal": CONDITIONS[:1], "foraminal": CONDITIONS[1:3], "subarticular": CONDITIONS[3:]}


def evaluate(dataset, coords: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Exact-slice rate (spinal) and 3D errors (mm) per group of the located points against the truth."""
    truth = truth.assign(study_id=truth["study_id"].astype(str))
    merged = coords.merge(truth, on=["study_id", "condition", "level"], suffixes=("", "_true"))
    if len(merged) != len(coords):
        raise SystemExit(f"{len(coords) - len(merged)} located points have no truth row")
    pred = merged[["world_x", "world_y", "world_z"]].to_numpy(float)
    true = merged[["world_x_true", "world_y_true", "world_z_true"]].to_numpy(float)
    merged["error_mm"] = np.linalg.norm(pred - true, axis=1)
    spinal = merged[merged["condition"] == CONDITIONS[0]]
    exact = []
    for row in spinal.itertuples():
        stack = dataset.study(row.study_id).series[row.series_id].stacks[row.stack]
        exact.append(stack.project(np.array([row.world_x_true, row.world_y_true, row.world_z_true])).slice
                     == row.slice)
    out = {"studies": coords["study_id"].nunique(), "spinal_exact_slice": float(np.mean(exact))}
    for group, conditions in GROUPS.items():
        errors = merged.loc[merged["condition"].isin(conditions), "error_mm"]
        out[f"{group}_median_mm"] = float(errors.median())
        out[f"{group}_p95_mm"] = float(errors.quantile(0.95))
    out["warnings"] = int((coords["warning"].fillna("") != "").sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], help="override for both configs, key=value")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    runs, seconds = [], {}
    for name, path in CONFIGS.items():
        run_dir = out / name
        runs.append(run_dir)
        if args.skip_train:
            continue
        config = load_config(path, args.set)
        start = time.perf_counter()
        train(config, args.train, run_dir, progress=False)
        seconds[name] = time.perf_counter() - start
    dataset = spinedata.open_dataset(args.eval)
    start = time.perf_counter()
    coords, _ = locate(dataset, runs, progress=False, device="cpu")
    locate_seconds = time.perf_counter() - start
    coords.to_csv(out / "eval_coords.csv", index=False)
    result = evaluate(dataset, coords, pd.read_csv(args.truth, dtype={"study_id": str}))
    n_train = len(spinedata.open_dataset(args.train).study_ids)
    print(f"train store: {n_train} studies; eval store: {result['studies']} studies")
    for name, s in seconds.items():
        print(f"training {name}: {s / 60:.1f} min")
    print(f"locate: {locate_seconds:.1f} s ({locate_seconds / result['studies']:.2f} s per study)\n")
    print("| measure | value | goal |")
    print("|---|---|---|")
    print(f"| spinal levels on the exact slice | {100 * result['spinal_exact_slice']:.1f}% | >= 90% |")
    goals = {"spinal_median_mm": "<= 3", "spinal_p95_mm": "<= 8", "foraminal_median_mm": "<= 5",
             "subarticular_median_mm": "<= 5"}
    for group in GROUPS:
        for stat in ("median", "p95"):
            key = f"{group}_{stat}_mm"
            print(f"| {group} point error, {stat} (mm) | {result[key]:.2f} | {goals.get(key, '')} |")
    print(f"| rows with a placement warning | {result['warnings']} | |")


if __name__ == "__main__":
    main()
