"""What the stage-1 locate settings cost: ``locate`` with earlier settings and the current ones (keypoint grid
placements; the slice refinement's half length along and half width across the canal, mm, and how its centres
are combined; the point refiner),
in interleaved rounds on one store with the same runs.

    .venv/bin/python bench/bench_locate_settings.py --store demo_work/test.zarr \
        --model demo_work/runs/slice_finder --model demo_work/runs/keypoints \
        --model demo_work/runs/fine_keypoints --rounds 3

Prints each setting's wall and CPU seconds per round (the first round warms caches and imports).
"""

from __future__ import annotations

import argparse
import time

import spinedata
from spinemodels.inference.locate import locate
from spinemodels.inference.point_refine import PointRefineOptions
from spinemodels.inference.slice_refine import SliceRefineOptions
from spinemodels.inference.stage_one_networks import keypoint_shift_set

OLD = {"centre": "median", "second_look": False}
"""The slice refinement before the line fit and the second look."""
SETTINGS = {
    "one grid, +-12 mm, 2 mm across (first)":
        (1, SliceRefineOptions(half_length_mm=12.0, half_width_mm=2.0, **OLD), False),
    "four placements, +-20 mm, 2 mm across":
        (4, SliceRefineOptions(half_length_mm=20.0, half_width_mm=2.0, **OLD), False),
    "nine placements, +-20 mm, 6 mm across":
        (9, SliceRefineOptions(half_length_mm=20.0, half_width_mm=6.0, **OLD), False),
    "nine placements, +-20 mm, 6 mm across, point refiner":
        (9, SliceRefineOptions(half_length_mm=20.0, half_width_mm=6.0, **OLD), True),
    "nine placements, +-30 mm line fit, point refiner, second look (now)": (9, SliceRefineOptions(), True)}
"""Name -> (keypoint grid placements, slice refinement settings, point refiner on; it needs a fine_keypoints
run among --model)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", action="append", required=True, help="slice_finder, keypoints (and fine_keypoints) run dirs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dataset = spinedata.open_dataset(args.store)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (shifts, slice_refine, point_refine) in SETTINGS.items():
            wall, cpu = time.perf_counter(), time.process_time()
            locate(dataset, args.model, progress=False, device="cpu", keypoint_shifts=keypoint_shift_set(shifts),
                   slice_refine=slice_refine,
                   point_refine=PointRefineOptions() if point_refine else None)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    print(f"{len(dataset.study_ids)} studies, {args.rounds} interleaved rounds\n")
    print("| setting | wall s per round | CPU s per round |\n|---|---|---|")
    for name, rounds in times.items():
        print(f"| {name} | {', '.join(f'{w:.1f}' for w, _ in rounds)} | {', '.join(f'{c:.1f}' for _, c in rounds)} |")


if __name__ == "__main__":
    main()
