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
the run directories under ``--out``; ``--no-refine`` locates without the sub-slice refinement of the spinal
points (``spinemodels.slice_refine``). The label audit is measured by shifting every label of ``--inject``
eval studies by one level and auditing them against the located points.
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
from spinemodels.slice_refine import SliceRefineOptions
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
    offset = []
    for row in spinal.itertuples():
        stack = dataset.study(row.study_id).series[row.series_id].stacks[row.stack]
        offset.append(stack.project(np.array([row.world_x_true, row.world_y_true, row.world_z_true])).slice
                      - row.slice)
    offset = np.abs(np.array(offset))
    out = {"studies": coords["study_id"].nunique(), "spinal_exact_slice": float(np.mean(offset == 0)),
           "spinal_within_1": float(np.mean(offset <= 1)),
           "spinal_refined": float(np.mean(spinal["plane_distance_mm"].to_numpy(float) != 0.0))}
    for group, conditions in GROUPS.items():
        errors = merged.loc[merged["condition"].isin(conditions), "error_mm"]
        out[f"{group}_median_mm"] = float(errors.median())
        out[f"{group}_p95_mm"] = float(errors.quantile(0.95))
    out["warnings"] = int((coords["warning"].fillna("") != "").sum())
    return out


def audit_injected(labels: pd.DataFrame, coords: pd.DataFrame, n_studies: int, seed: int) -> dict:
    """Shift every label of ``n_studies`` random studies by one level (up or down), audit the labels against
    the located points and count how many shifted studies are found, and how many clean ones are flagged."""
    from spinedata.constants import LEVELS
    from spinemodels.audit import audit_labels

    rng = np.random.default_rng(seed)
    labels = labels.assign(study_id=labels["study_id"].astype(str))
    chosen = set(rng.choice(sorted(labels["study_id"].unique()), n_studies, replace=False).tolist())
    shifted = labels.copy()
    for study_id in chosen:
        shift = int(rng.choice([-1, 1]))
        mask = shifted["study_id"] == study_id
        index = shifted.loc[mask, "level"].map(LEVELS.index) + shift
        shifted.loc[mask, "level"] = [LEVELS[i] if 0 <= i < len(LEVELS) else "" for i in index]
    shifted = shifted[shifted["level"] != ""]
    findings = audit_labels(shifted, coords)
    flagged = set(findings.loc[findings["kind"] == "shifted", "study_id"])
    clean_flags = set(audit_labels(labels, coords)["study_id"])
    return {"injected": len(chosen), "found": len(chosen & flagged), "false_studies": len(flagged - chosen),
            "clean_flagged": len(clean_flags)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], help="override for both configs, key=value")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--no-refine", action="store_true", help="the slice finder's slices, not refined")
    parser.add_argument("--inject", type=int, default=5, help="eval studies whose labels are shifted for the audit")
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
    refine = None if args.no_refine else SliceRefineOptions()
    coords, _ = locate(dataset, runs, progress=False, device="cpu", slice_refine=refine)
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
    print(f"| spinal levels within one slice | {100 * result['spinal_within_1']:.1f}% | |")
    print(f"| spinal levels with a refined slice | {100 * result['spinal_refined']:.1f}% | |")
    goals = {"spinal_median_mm": "<= 3", "spinal_p95_mm": "<= 8", "foraminal_median_mm": "<= 5",
             "subarticular_median_mm": "<= 5"}
    for group in GROUPS:
        for stat in ("median", "p95"):
            key = f"{group}_{stat}_mm"
            print(f"| {group} point error, {stat} (mm) | {result[key]:.2f} | {goals.get(key, '')} |")
    print(f"| rows with a placement warning | {result['warnings']} | |")
    audit = audit_injected(dataset.labels, coords, args.inject, seed=0)
    print(f"\naudit: {audit['found']} of {audit['injected']} studies with every label shifted by one level found; "
          f"{audit['false_studies']} other studies flagged as shifted; "
          f"{audit['clean_flagged']} studies flagged when no label is shifted")


if __name__ == "__main__":
    main()
