"""What the stage-1 locate settings cost: ``locate`` with the old settings (one keypoint grid, +-12 mm of canal
for the slice refinement) and the current ones (four half-pixel grid placements, +-20 mm), in interleaved
rounds on one store with the same runs.

    .venv/bin/python bench/bench_locate_settings.py --store demo_work/test.zarr \
        --model demo_work/runs/slice_finder --model demo_work/runs/keypoints --rounds 3

Prints each setting's wall and CPU seconds per round (the first round warms caches and imports).
"""

from __future__ import annotations

import argparse
import time

import spinedata
from spinemodels.inference.locate import locate
from spinemodels.inference.slice_refine import SliceRefineOptions
from spinemodels.inference.stage_one_networks import keypoint_shift_set

SETTINGS = {"one grid, +-12 mm (before)": (1, 12.0), "four placements, +-20 mm (now)": (4, 20.0)}
"""Name -> (keypoint grid placements, refinement half length in mm)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", action="append", required=True, help="slice_finder and keypoints run dirs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dataset = spinedata.open_dataset(args.store)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (shifts, half_length) in SETTINGS.items():
            wall, cpu = time.perf_counter(), time.process_time()
            locate(dataset, args.model, progress=False, device="cpu", keypoint_shifts=keypoint_shift_set(shifts),
                   slice_refine=SliceRefineOptions(half_length_mm=half_length))
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    print(f"{len(dataset.study_ids)} studies, {args.rounds} interleaved rounds\n")
    print("| setting | wall s per round | CPU s per round |\n|---|---|---|")
    for name, rounds in times.items():
        print(f"| {name} | {', '.join(f'{w:.1f}' for w, _ in rounds)} | {', '.join(f'{c:.1f}' for _, c in rounds)} |")


if __name__ == "__main__":
    main()
