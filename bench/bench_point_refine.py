"""The point refiner's settings, on points stage 1 already found: each spinal row of a located coords.csv is
moved in-plane by the ``fine_keypoints`` run(s) with each setting tried (``PointRefineOptions``: looks,
front-to-back flip), and compared with the generator's exact truth (synth_truth.csv) before and after.

    .venv/bin/python bench/bench_point_refine.py --model runs/fine \
        --eval val.zarr val_raw/synth_truth.csv locate/val_coords.csv \
        --eval val512.zarr val512_raw/synth_truth.csv locate/val512_coords.csv --iterations 1 2 3

Reports per store and setting: the 3D error's median, p95 and share over 2 mm, the median error along the
crop's rows (head-foot) and columns (front-back), the moves' median, p99 and maximum (for ``max_move_mm``),
and the seconds per study (each stack is read once per store: the first refined setting's seconds include
the reading). The anatomical checks and their fallbacks are not rerun (bench_locate.py does the
whole of ``spine locate``).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd
import torch

import spinedata
from spinedata.constants import CONDITIONS
from spinemodels.inference.point_refine import PointRefineOptions, PointRefiner
from spinemodels.inference.runs import FoldModels, runs_for

WORLD = ["world_x", "world_y", "world_z"]


def refine_rows(dataset, coords: pd.DataFrame, refiner: PointRefiner | None,
                volumes: dict | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The spinal rows of ``coords`` with their world points moved in-plane (as they are when ``refiner`` is
    None), and each move (mm). ``volumes`` keeps each stack's pixels between calls (read once per store)."""
    spinal = coords[coords["condition"] == CONDITIONS[0]].copy()
    volumes = {} if volumes is None else volumes
    moves = np.zeros(len(spinal))
    if refiner is None:
        return spinal, moves
    for (study_id, series_id, k), group in spinal.groupby(["study_id", "series_id", "stack"], sort=False):
        stack = dataset.study(study_id).series[str(series_id)].stacks[int(k)]
        voxels = np.asarray(stack.world_to_voxel(group[WORLD].to_numpy(float)), dtype=np.float64)
        key = (study_id, str(series_id), int(k))
        if key not in volumes:
            volumes[key] = np.asarray(stack.read())
        found = refiner.refine(volumes[key], voxels[:, 0], voxels[:, 1:], stack.geometry.pixel_spacing,
                               str(study_id), False, "cpu")
        world = [stack.voxel_to_world(np.array([s, *rc])) for s, rc in zip(voxels[:, 0], found.points, strict=True)]
        spinal.loc[group.index, WORLD] = np.array(world)
        moves[spinal.index.get_indexer(group.index)] = found.moved_mm
    return spinal, moves


def errors(dataset, spinal: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """3D error quantiles, and median error along the stack's rows and columns, of the spinal rows."""
    merged = spinal.merge(truth, on=["study_id", "condition", "level"], suffixes=("", "_true"))
    d = merged[WORLD].to_numpy(float) - merged[[f"{c}_true" for c in WORLD]].to_numpy(float)
    along = []
    for row, step in zip(merged.itertuples(), d, strict=True):
        affine = np.asarray(dataset.study(row.study_id).series[str(row.series_id)].stacks[int(row.stack)].affine)
        axes = affine[:3, 1:3] / np.linalg.norm(affine[:3, 1:3], axis=0)
        along.append(np.abs(step @ axes))
    norm, along = np.linalg.norm(d, axis=1), np.array(along)
    return {"median_mm": float(np.median(norm)), "p95_mm": float(np.quantile(norm, 0.95)),
            "over_2mm": float(np.mean(norm > 2.0)), "rows_mm": float(np.median(along[:, 0])),
            "cols_mm": float(np.median(along[:, 1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="fine_keypoints run dir (repeatable)")
    parser.add_argument("--eval", nargs=3, action="append", required=True, metavar=("STORE", "TRUTH", "COORDS"),
                        help="a store, its synth_truth.csv and stage 1's coords.csv of it (repeatable)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--flip", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    runs = [FoldModels.load(run, device) for run, _ in runs_for(args.model, ("fine_keypoints",), "this bench")]
    flips = {"on": [True], "off": [False], "both": [True, False]}[args.flip]
    print("| store | setting | median (mm) | p95 (mm) | > 2 mm | head-foot median | front-back median | "
          "move median / p99 / max (mm) | s per study |")
    print("|---|---|---|---|---|---|---|---|---|")
    for store, truth_csv, coords_csv in args.eval:
        dataset = spinedata.open_dataset(store)
        truth = pd.read_csv(truth_csv, dtype={"study_id": str})
        coords = pd.read_csv(coords_csv, dtype={"study_id": str, "series_id": str})
        settings = [None, *itertools.product(args.iterations, flips)]
        volumes: dict = {}
        for setting in settings:
            refiner = None if setting is None else PointRefiner(
                runs, PointRefineOptions(iterations=setting[0], flip=setting[1], max_move_mm=1e9))
            start = time.perf_counter()
            spinal, moves = refine_rows(dataset, coords, refiner, volumes)
            seconds = (time.perf_counter() - start) / coords["study_id"].nunique()
            e = errors(dataset, spinal, truth)
            name = "stage 1 as located" if setting is None else f"{setting[0]} look(s), flip {'on' if setting[1] else 'off'}"
            move = f"{np.median(moves):.2f} / {np.quantile(moves, 0.99):.2f} / {moves.max():.2f}"
            print(f"| {store} | {name} | {e['median_mm']:.2f} | {e['p95_mm']:.2f} | {100 * e['over_2mm']:.1f} % | "
                  f"{e['rows_mm']:.2f} | {e['cols_mm']:.2f} | {move} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
