"""Stage-1 accuracy on synthetic studies: train the small CPU configs on one store (for one or several
``train.seed``), locate the points of unseen studies (other synth seeds, other matrices) and compare them
with the generator's exact truth (synth_truth.csv).

    .venv/bin/spine synth bench/out/synth_train --studies 40 --seed 0 --matrix 192
    .venv/bin/spine synth bench/out/synth_eval --studies 40 --seed 12
    .venv/bin/spine synth bench/out/synth_eval512 --studies 20 --seed 13 --matrix 512
    .venv/bin/spine ingest ...   (each folder to a store)
    .venv/bin/python bench/bench_locate.py --train bench/out/train.zarr \
        --eval bench/out/eval.zarr bench/out/synth_eval/synth_truth.csv \
        --eval bench/out/eval512.zarr bench/out/synth_eval512/synth_truth.csv \
        --seeds 0 1 2 --demo-epochs --out bench/out/locate

Reports per training seed and evaluation store: exact-slice rate of the spinal levels (the slice of the
chosen stack nearest to the true point; how many misses are near ties, the true point within
``NEAR_BOUNDARY_SLICES`` of the middle between two slices), the spinal error across the slices (mm along
the slice normal), 3D point errors (mm) per condition group, the rows with a
warning, the points more than 15 mm from the truth *without* a warning; then the mean and range over the
seeds, and the error quantiles per confidence band (all seeds pooled). ``--skip-train`` reuses the run
directories under ``--out``; ``--no-refine`` locates without the sub-slice refinement of the spinal points;
``--no-fine`` neither trains nor uses the point refiner (``fine_keypoints``);
``--demo-epochs`` trains with ``spine demo``'s epochs (``spinemodels.demo.DEMO_EPOCHS``). The label audit
(first seed, first store) shifts every label of ``--inject`` studies by one level and audits them.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

import spinedata
from spinedata.conditions import CONDITION_GROUPS, SCORED_GROUPS
from spinedata.constants import CONDITIONS
from spinemodels.catalog import load_config
from spinemodels.inference.locate import locate
from spinemodels.inference.slice_refine import SliceRefineOptions
from spinemodels.inference.stage_one_networks import KEYPOINT_SHIFTS, keypoint_shift_set
from spinemodels.training import train

CONFIGS = {"finder": "pkg:cpu/slice_finder", "keypoints": "pkg:cpu/keypoints", "fine": "pkg:cpu/fine_keypoints"}
TASKS = {"finder": "slice_finder", "keypoints": "keypoints", "fine": "fine_keypoints"}
SETS = {"finder": "finder_set", "keypoints": "keypoints_set", "fine": "fine_set"}
GROUPS = {name: CONDITION_GROUPS[name].conditions for name in SCORED_GROUPS}
LARGE_ERROR_MM = 15.0
"""A point this far from the truth must carry a warning."""
NEAR_BOUNDARY_SLICES = 0.1
"""A true point this close (in slices) to the middle between two slices makes the exact slice a near tie."""
CONFIDENCE_BANDS = (0.0, 0.05, 0.2, 0.5, 1.0001)
"""Edges of the confidence bands whose error quantiles are reported."""


def evaluate(dataset, coords: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Exact-slice rate (spinal) and 3D errors (mm) per group of the located points against the truth."""
    truth = truth.assign(study_id=truth["study_id"].astype(str))
    merged = coords.merge(truth, on=["study_id", "condition", "level"], suffixes=("", "_true"))
    if len(merged) != len(coords):
        raise SystemExit(f"{len(coords) - len(merged)} located points have no truth row")
    pred = merged[["world_x", "world_y", "world_z"]].to_numpy(float)
    true = merged[["world_x_true", "world_y_true", "world_z_true"]].to_numpy(float)
    merged["error_mm"] = np.linalg.norm(pred - true, axis=1)
    coords["error_mm"] = merged["error_mm"].to_numpy()
    spinal = merged[merged["condition"] == CONDITIONS[0]]
    offset, across, tie = [], [], []
    for row in spinal.itertuples():
        stack = dataset.study(row.study_id).series[row.series_id].stacks[row.stack]
        true = np.array([row.world_x_true, row.world_y_true, row.world_z_true])
        offset.append(stack.project(true).slice - row.slice)
        normal = np.asarray(stack.geometry.normal, dtype=np.float64)
        across.append(abs(float(np.dot(np.array([row.world_x, row.world_y, row.world_z]) - true, normal))))
        fraction = float(stack.geometry.world_to_voxel(true)[0]) % 1.0
        tie.append(abs(fraction - 0.5) < NEAR_BOUNDARY_SLICES)
    offset, across, tie = np.abs(np.array(offset)), np.array(across), np.array(tie, dtype=bool)
    out = {"studies": coords["study_id"].nunique(), "spinal_exact_slice": float(np.mean(offset == 0)),
           "spinal_within_1": float(np.mean(offset <= 1)),
           "spinal_misses_near_boundary": f"{int(np.sum((offset != 0) & tie))} of {int(np.sum(offset != 0))}",
           "spinal_across_slices_median_mm": float(np.median(across)),
           "spinal_across_slices_p95_mm": float(np.quantile(across, 0.95)),
           "spinal_refined": float(np.mean(spinal["plane_distance_mm"].to_numpy(float) != 0.0))}
    for group, conditions in GROUPS.items():
        errors = merged.loc[merged["condition"].isin(conditions), "error_mm"]
        out[f"{group}_median_mm"] = float(errors.median())
        out[f"{group}_p95_mm"] = float(errors.quantile(0.95))
    warned = merged["warning"].fillna("") != ""
    out["warnings"] = int(warned.sum())
    out["warned_studies"] = int(merged.loc[warned, "study_id"].nunique())
    out["large_unwarned"] = int(((merged["error_mm"] > LARGE_ERROR_MM) & ~warned).sum())
    out["large"] = int((merged["error_mm"] > LARGE_ERROR_MM).sum())
    return out


def confidence_bands(coords: pd.DataFrame) -> pd.DataFrame:
    """Error quantiles (mm) of the located points per confidence band (``coords`` with ``error_mm``)."""
    rows = []
    for low, high in itertools.pairwise(CONFIDENCE_BANDS):
        errors = coords.loc[(coords["confidence"] >= low) & (coords["confidence"] < high), "error_mm"]
        if len(errors) == 0:
            continue
        rows.append({"band": f"{low:.2f}-{min(high, 1.0):.2f}", "points": len(errors),
                     "median": errors.median(), "p90": errors.quantile(0.9), "p95": errors.quantile(0.95),
                     "max": errors.max(), f"over_{LARGE_ERROR_MM:.0f}mm": int((errors > LARGE_ERROR_MM).sum())})
    return pd.DataFrame(rows)


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


GOALS = {"spinal_exact_slice": ">= 95%", "spinal_median_mm": "<= 2", "spinal_p95_mm": "<= 6",
         "foraminal_median_mm": "<= 4", "subarticular_median_mm": "<= 4", "large_unwarned": "0"}
MEASURES = ["spinal_exact_slice", "spinal_within_1", "spinal_refined", "spinal_across_slices_median_mm",
            "spinal_across_slices_p95_mm", "spinal_median_mm", "spinal_p95_mm",
            "foraminal_median_mm", "foraminal_p95_mm", "subarticular_median_mm", "subarticular_p95_mm",
            "warnings", "warned_studies", "large", "large_unwarned"]


def markdown(frame: pd.DataFrame) -> str:
    """A small DataFrame as a markdown table (floats with 2 decimals)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def train_runs(args, seed: int, out: Path) -> tuple[list[Path], dict]:
    """Train (unless ``--skip-train``) the stage-1 models for one ``train.seed`` (the point refiner unless
    ``--no-fine``); their run directories."""
    from spinemodels.demo import DEMO_EPOCHS

    runs, seconds = [], {}
    for name, path in CONFIGS.items():
        if name == "fine" and args.no_fine:
            continue
        run_dir = out / name
        runs.append(run_dir)
        if args.skip_train:
            continue
        task = TASKS[name]
        overrides = [*args.set, f"train.seed={seed}"]
        if args.demo_epochs:
            overrides.append(f"train.epochs={DEMO_EPOCHS[task]}")
        overrides += getattr(args, SETS[name])
        config = load_config(path, overrides)
        start = time.perf_counter()
        train(config, args.train, run_dir, progress=False)
        seconds[name] = time.perf_counter() - start
    return runs, seconds


def _fmt(key: str, value: float) -> str:
    if key.startswith("spinal_") and not key.endswith("_mm"):
        return f"{100 * value:.1f}%"
    return f"{value:.2f}" if key.endswith("_mm") else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", nargs=2, action="append", required=True, metavar=("STORE", "TRUTH"),
                        help="an evaluation store and its synth_truth.csv (repeatable)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="train.seed of each training")
    parser.add_argument("--set", action="append", default=[], help="override for both configs, key=value")
    parser.add_argument("--finder-set", action="append", default=[], help="override for the slice finder")
    parser.add_argument("--keypoints-set", action="append", default=[], help="override for the keypoint model")
    parser.add_argument("--fine-set", action="append", default=[], help="override for the point refiner")
    parser.add_argument("--no-fine", action="store_true",
                        help="without the point refiner (fine_keypoints): the keypoint model's points")
    parser.add_argument("--demo-epochs", action="store_true", help="the epochs `spine demo` trains with")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--refine-half-length", type=float, default=None,
                        help="the slice refinement's half_length_mm (default: SliceRefineOptions')")
    parser.add_argument("--refine-half-width", type=float, default=None,
                        help="the slice refinement's half_width_mm (default: SliceRefineOptions')")
    parser.add_argument("--shifts", type=int, default=None, choices=[1, 4, 9, 16],
                        help="sub-pixel placements of the keypoint grid averaged (k*k: 0, 1/k, ... px along each axis; default: locate's own)")
    parser.add_argument("--no-refine", action="store_true", help="the slice finder's slices, not refined")
    parser.add_argument("--refine-centre", choices=["line", "median"], default=None,
                        help="how the slice refinement combines its band centres (default: SliceRefineOptions')")
    parser.add_argument("--no-second-look", action="store_true",
                        help="no second slice refinement from the point refiner's points")
    parser.add_argument("--inject", type=int, default=5, help="eval studies whose labels are shifted for the audit")
    args = parser.parse_args()
    out = Path(args.out)
    chosen = {key: value for key, value in (("half_length_mm", args.refine_half_length),
                                            ("half_width_mm", args.refine_half_width),
                                            ("centre", args.refine_centre)) if value is not None}
    if args.no_second_look:
        chosen["second_look"] = False
    refine = None if args.no_refine else SliceRefineOptions(**chosen)
    results, pooled, first_coords = [], {}, None
    n_train = len(spinedata.open_dataset(args.train).study_ids)
    for seed in args.seeds:
        seed_dir = out / f"seed_{seed}" if len(args.seeds) > 1 else out
        runs, seconds = train_runs(args, seed, seed_dir)
        for name, s in seconds.items():
            print(f"seed {seed}: training {name}: {s / 60:.1f} min")
        for store, truth_csv in args.eval:
            name = Path(store).name.removesuffix(".zarr")
            dataset = spinedata.open_dataset(store)
            start = time.perf_counter()
            coords, _ = locate(dataset, runs, progress=False, device="cpu", slice_refine=refine,
                                keypoint_shifts=(KEYPOINT_SHIFTS if args.shifts is None else keypoint_shift_set(args.shifts)))
            locate_seconds = time.perf_counter() - start
            result = evaluate(dataset, coords, pd.read_csv(truth_csv, dtype={"study_id": str}))
            coords.to_csv(seed_dir / f"{name}_coords.csv", index=False)
            print(f"seed {seed}, {name}: {result['studies']} studies, locate {locate_seconds / result['studies']:.2f} "
                  f"s per study")
            results.append({"seed": seed, "store": name, **result})
            pooled.setdefault(name, []).append(coords)
            if first_coords is None:
                first_coords = (dataset, coords)
    table = pd.DataFrame(results)
    print(f"\ntrain store: {n_train} studies; seeds {args.seeds}\n")
    for name, group in table.groupby("store", sort=False):
        print(f"### {name}: {int(group['studies'].iloc[0])} unseen studies, {len(group)} training seed(s)\n")
        print("| measure | " + " | ".join(f"seed {s}" for s in group["seed"]) + " | mean | range | goal |")
        print("|---|" + "---|" * (len(group) + 3))
        for key in MEASURES:
            values = group[key].to_numpy(float)
            cells = " | ".join(_fmt(key, v) for v in values)
            print(f"| {key} | {cells} | {_fmt(key, values.mean())} | {_fmt(key, values.min())}-"
                  f"{_fmt(key, values.max())} | {GOALS.get(key, '')} |")
        print(f"| spinal misses with the truth within {NEAR_BOUNDARY_SLICES} slices of a slice boundary | "
              + " | ".join(group["spinal_misses_near_boundary"]) + " | | | |")
        bands = confidence_bands(pd.concat(pooled[name], ignore_index=True))
        print(f"\nerror (mm) per confidence band, {name}, all seeds pooled:\n")
        print(markdown(bands))
        print()
    dataset, coords = first_coords
    audit = audit_injected(dataset.labels, coords, args.inject, seed=0)
    print(f"audit: {audit['found']} of {audit['injected']} studies with every label shifted by one level found; "
          f"{audit['false_studies']} other studies flagged as shifted; "
          f"{audit['clean_flagged']} studies flagged when no label is shifted")


if __name__ == "__main__":
    main()
