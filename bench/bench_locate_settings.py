"""What the stage-1 locate settings cost: ``locate`` with earlier settings and the current ones (keypoint grid
placements; the slice refinement's half length along and half width across the canal, mm; the point refiner),
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

SETTINGS = {"one grid, +-12 mm, 2 mm across (first)": (1, 12.0, 2.0, False),
            "four placements, +-20 mm, 2 mm across": (4, 20.0, 2.0, False),
            "nine placements, +-20 mm, 6 mm across": (9, 20.0, 6.0, False),
            "nine placements, +-20 mm, 6 mm across, point refiner (now)": (9, 20.0, 6.0, True)}
"""Name -> (keypoint grid placements, refinement half length and half width in mm, point refiner on; it needs a
fine_keypoints run among --model)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", action="append", required=True, help="slice_finder, keypoints (and fine_keypoints) run dirs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dataset = spinedata.open_dataset(args.store)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (shifts, half_length, half_width, point_refine) in SETTINGS.items():
            wall, cpu = time.perf_counter(), time.process_time()
            locate(dataset, args.model, progress=False, device="cpu", keypoint_shifts=keypoint_shift_set(shifts),
                   slice_refine=SliceRefineOptions(half_length_mm=half_length, half_width_mm=half_width),
                   point_refine=PointRefineOptions() if point_refine else None)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    print(f"{len(dataset.study_ids)} studies, {args.rounds} interleaved rounds\n")
    print("| setting | wall s per round | CPU s per round |\n|---|---|---|")
    for name, rounds in times.items():
        print(f"| {name} | {', '.join(f'{w:.1f}' for w, _ in rounds)} | {', '.join(f'{c:.1f}' for _, c in rounds)} |")


if __name__ == "__main__":
    main()
