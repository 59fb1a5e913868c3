"""How precisely the sub-slice refinement alone places the spinal points across the slices: started from
the true in-plane point and the true slice rounded (an oracle for stage 1's keypoints and slice finder),
for several settings (every combination of the given centre estimates, half lengths along and half widths
across the canal); and how many true points lie near a slice boundary.

    .venv/bin/python bench/bench_slice_refine_oracle.py --store S4/val.zarr \
        --truth S4/val_raw/synth_truth.csv --studies 40 --centre median line --half-length 20 30 --half-width 6

Prints, per setting, the share of levels the refinement answered, its bias, standard deviation and mean
absolute error across the slices (in slices) and the exact-slice rate; then the share of true points within 0.1, 0.05
and 0.02 slices of the middle between two slices (near ties, where any refinement is a coin toss).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd

import spinedata
from spinedata.constants import CONDITIONS
from spinemodels.inference.slice_refine import SliceRefineOptions, refine_levels

SAGITTAL_T2 = "Sagittal T2/STIR"
TIE_DISTANCES = (0.1, 0.05, 0.02)
"""Distances (slices) from the middle between two slices counted as near ties."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--truth", required=True, help="synth_truth.csv of the store's studies")
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--half-width", type=float, nargs="+", default=[SliceRefineOptions().half_width_mm])
    parser.add_argument("--half-length", type=float, nargs="+", default=[SliceRefineOptions().half_length_mm])
    parser.add_argument("--centre", nargs="+", default=[SliceRefineOptions().centre], choices=["line", "median"])
    args = parser.parse_args()
    truth = pd.read_csv(args.truth, dtype={"study_id": str})
    truth = truth[truth["condition"] == CONDITIONS[0]]
    dataset = spinedata.open_dataset(args.store)
    settings = {(centre, length, width): SliceRefineOptions(half_length_mm=length, half_width_mm=width, centre=centre)
                for centre, length, width in itertools.product(args.centre, args.half_length, args.half_width)}
    answers: dict[tuple, list[float]] = {key: [] for key in settings}
    true_slices: list[float] = []
    for study_id in dataset.study_ids[: args.studies]:
        points = truth[truth["study_id"] == study_id].sort_values("level")
        series = dataset.study(study_id).series_with_role(SAGITTAL_T2)
        if not series or points.empty:
            continue
        stack = series[0].stacks[0]
        volume = stack.read()
        voxels = np.array([stack.world_to_voxel(row) for row in points[["world_x", "world_y", "world_z"]].to_numpy()])
        true_slices += list(voxels[:, 0])
        for key, options in settings.items():
            found = refine_levels(volume, np.round(voxels[:, 0]), voxels[:, 1:], stack.pixel_spacing,
                                  stack.slice_spacing, options)  # fmt: skip
            answers[key] += [r.position if r.used else np.nan for r in found]
    true = np.array(true_slices)
    print(f"{len(true)} spinal levels of {args.store}\n")
    print("| centre | half length along (mm) | half width across (mm) | answered | bias (slices) | sd (slices) "
          "| mean absolute (slices) | exact slice |\n|---|---|---|---|---|---|---|---|")
    for (centre, length, width), values in answers.items():
        error = np.array(values) - true
        exact = np.mean(np.round(np.array(values)) == np.round(true))
        print(f"| {centre} | {length:g} | {width:g} | {np.isfinite(error).mean():.1%} | {np.nanmean(error):+.4f} "
              f"| {np.nanstd(error):.4f} | {np.nanmean(np.abs(error)):.4f} | {exact:.1%} |")
    from_middle = np.abs(true % 1.0 - 0.5)
    print("\n" + ", ".join(f"within {d:g} slices of a boundary: {np.mean(from_middle < d):.1%}" for d in TIE_DISTANCES))


if __name__ == "__main__":
    main()
