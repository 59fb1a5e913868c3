"""Seconds per study of the three graders' networks (forward only, CPU), for given grading configs.

One study is ``(1, 5, K, N, S, S)`` crops per group (K = 1 spinal, 2 foraminal/subarticular), as
``spine classify`` feeds them; crops themselves cost 0.3-0.4 s per study at 224 px (bench_crops.py).
Networks are built with ``pretrained: false`` (weights do not change the cost).

    .venv/bin/python bench/bench_grader_inference.py spinemodels/configs/cpu/grade_*.yaml spinemodels/configs/grade_*.yaml
"""

from __future__ import annotations

import argparse
import time

import torch

from spinemodels.catalog import get_task, load_config
from spinemodels.networks.grader import grid_outputs


def seconds_per_study(config_path: str, repeats: int) -> tuple[str, tuple[int, ...], float]:
    """Median forward time of one study's crops through the config's grader network."""
    config = load_config(config_path)
    task = get_task(config.task)(config)
    if not hasattr(task, "group"):
        raise SystemExit(f"{config_path}: task {config.task!r} is not a per-group grader")
    network = task.build_network(pretrained=False).eval()
    data = config.data
    shape = (1, 5, task.group.sides, data.n_slices, data.image_size, data.image_size)
    crops = torch.rand(shape)
    times = []
    with torch.inference_mode():
        grid_outputs(network, crops)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            grid_outputs(network, crops)
            times.append(time.perf_counter() - start)
    times.sort()
    return config.task, shape, times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="grading configs, files or pkg:NAME (grade_spinal/foraminal/subarticular)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    print("| config | task | crops per study | network s/study |")
    print("|---|---|---|---|")
    for path in args.configs:
        if "master" in path:
            continue
        task, shape, seconds = seconds_per_study(path, args.repeats)
        print(f"| `{path}` | {task} | {shape} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
