"""Does the matrix change where stage 1 puts the points? The same synthetic studies (same seed: same anatomy,
field of view and position) are written at several sagittal matrices, located with the given stage-1 runs,
and each level's spinal point is compared across the matrices (and with the truth).

    .venv/bin/python bench/bench_matrices.py --model runs/finder --model runs/keypoints --studies 5 --seed 31 \
        --matrices 192 256 384 512 --out bench/out/matrices

Prints, per study, the largest distance (mm) between any two matrices' points of a level (spinal, all
levels), the error against the truth per matrix, and the rows with a warning; then the median and maximum
over the levels, and the largest spread across the slices and in-plane (each the largest over the pairs).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

import spinedata
from spinedata.constants import CONDITIONS
from spinedata.ingest import ingest
from spinedata.synth import generate
from spinemodels.inference.locate import locate
from spinemodels.inference.slice_refine import SliceRefineOptions
from spinemodels.inference.stage_one_networks import KEYPOINT_SHIFTS, keypoint_shift_set

WORLD = ["world_x", "world_y", "world_z"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="slice_finder and keypoints run dirs")
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--matrices", type=int, nargs="+", default=[192, 256, 384, 512])
    parser.add_argument("--out", required=True)
    parser.add_argument("--noise", type=float, default=None,
                        help="the generator's noise level (default: its own); 0 shows the pipeline without pixel noise")
    parser.add_argument("--shifts", type=int, default=None, choices=[1, 4, 9, 16],
                        help="sub-pixel placements of the keypoint grid averaged (k*k: 0, 1/k, ... px along each axis; default: locate's own)")
    parser.add_argument("--refine-half-width", type=float, default=None,
                        help="the slice refinement's half_width_mm (default: SliceRefineOptions')")
    args = parser.parse_args()
    refine = (SliceRefineOptions() if args.refine_half_width is None
              else SliceRefineOptions(half_width_mm=args.refine_half_width))
    shifts = (KEYPOINT_SHIFTS if args.shifts is None else keypoint_shift_set(args.shifts))
    out = Path(args.out)
    located = {}
    for matrix in args.matrices:
        data, store = out / f"synth_{matrix}", out / f"m{matrix}.zarr"
        noise = {} if args.noise is None else {"noise": args.noise}
        if not store.is_dir():
            generate(data, args.studies, args.seed, sagittal_matrices=(matrix,), axial_matrices=(128,), **noise)
            ingest(data, store, workers=1)
        coords, _ = locate(spinedata.open_dataset(str(store)), args.model, progress=False, device="cpu",
                           keypoint_shifts=shifts, slice_refine=refine)
        located[matrix] = coords[coords["condition"] == CONDITIONS[0]].set_index(["study_id", "level"])
    truth = pd.read_csv(out / f"synth_{args.matrices[0]}" / "synth_truth.csv", dtype={"study_id": str})
    truth = truth[truth["condition"] == CONDITIONS[0]].set_index(["study_id", "level"])
    keys = located[args.matrices[0]].index
    first = spinedata.open_dataset(str(out / f"m{args.matrices[0]}.zarr"))
    normals = np.array([first.study(study_id).series[str(row.series_id)].stacks[int(row.stack)].geometry.normal
                        for (study_id, _), row in zip(keys, located[args.matrices[0]].itertuples(), strict=True)],
                       dtype=np.float64)
    spread, across, in_plane = np.zeros(len(keys)), np.zeros(len(keys)), np.zeros(len(keys))
    for a, b in itertools.combinations(args.matrices, 2):
        d = located[a].loc[keys, WORLD].to_numpy(float) - located[b].loc[keys, WORLD].to_numpy(float)
        normal_part = np.abs(np.sum(d * normals, axis=1))
        spread = np.maximum(spread, np.linalg.norm(d, axis=1))
        across = np.maximum(across, normal_part)
        in_plane = np.maximum(in_plane, np.sqrt(np.maximum(np.sum(d * d, axis=1) - normal_part**2, 0.0)))
    table = pd.DataFrame({"spread_mm": spread}, index=keys)
    for matrix in args.matrices:
        error = located[matrix].loc[keys, WORLD].to_numpy(float) - truth.loc[keys, WORLD].to_numpy(float)
        table[f"error_{matrix}"] = np.linalg.norm(error, axis=1)
        table[f"warned_{matrix}"] = located[matrix].loc[keys, "warning"].fillna("").ne("").to_numpy()
    per_study = table.groupby(level="study_id").agg("max")
    print(f"{args.studies} studies (synth seed {args.seed}) at sagittal matrices {args.matrices}; spinal points\n")
    print("| study | largest spread between matrices (mm) | " +
          " | ".join(f"largest error at {m} (mm)" for m in args.matrices) + " | warned at |")
    print("|---|---|" + "---|" * len(args.matrices) + "---|")
    for study_id, row in per_study.iterrows():
        warned = [str(m) for m in args.matrices if row[f"warned_{m}"]]
        print(f"| {study_id} | {row['spread_mm']:.2f} | " +
              " | ".join(f"{row[f'error_{m}']:.2f}" for m in args.matrices) + f" | {', '.join(warned) or '-'} |")
    print(f"\nlevels: {len(table)}; spread median {np.median(spread):.2f} mm, 90th percentile "
          f"{np.quantile(spread, 0.9):.2f} mm, max {spread.max():.2f} mm; levels within 1 mm: "
          f"{np.mean(spread <= 1.0):.0%}")
    print(f"of which across the slices (along the first matrix's slice normal): median {np.median(across):.2f} mm, "
          f"max {across.max():.2f} mm; in-plane: median {np.median(in_plane):.2f} mm, 90th percentile "
          f"{np.quantile(in_plane, 0.9):.2f} mm, max {in_plane.max():.2f} mm; levels within 1 mm in-plane: "
          f"{np.mean(in_plane <= 1.0):.0%}")


if __name__ == "__main__":
    main()
