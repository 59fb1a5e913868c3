"""Is the data loader the bottleneck? Samples per second of each task's training dataset (cold: read from the
store, normalise, resize; warm: from the per-worker cache) against the model's own forward+backward rate.

    .venv/bin/python bench/bench_loader.py --data bench/out/train.zarr \
        pkg:cpu/slice_finder pkg:cpu/keypoints --workers 1

Prints a markdown table (paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

import spinedata
from spinemodels.catalog import get_task, load_config
from spinemodels.data.sampling import EpochSampler
from spinemodels.trainer import to_device


def loader_rate(dataset, batch_size: int, workers: int, epochs: int = 2) -> list[float]:
    """Samples per second of each pass over the dataset (persistent workers keep their caches)."""
    sampler = EpochSampler(len(dataset), seed=0, shuffle=True)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        persistent_workers=workers > 0)
    rates = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["image"])
        rates.append(n / (time.perf_counter() - start))
    return rates


def model_rate(task, dataset, batch_size: int, steps: int) -> float:
    """Samples per second of forward + backward + optimiser step on this machine's CPU."""
    network = task.build_network(pretrained=False)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    batch = next(iter(DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), seed=0,
                                                                                      shuffle=True))))
    batch = to_device(batch, torch.device("cpu"))
    network.train()
    for step in range(steps + 1):
        if step == 1:  # the first step warms up allocators
            start = time.perf_counter()
        loss = task.loss(task.forward(network, batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * len(batch["image"]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--data", required=True, help="store written by `spine ingest`")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps of the model")
    args = parser.parse_args()
    dataset = spinedata.open_dataset(args.data)
    ids = dataset.study_ids
    print(f"store {args.data}: {len(ids)} studies; torch threads {torch.get_num_threads()}; "
          f"loader workers {args.workers}\n")
    print("| config | samples | loader cold (samples/s) | loader warm (samples/s) | model fwd+bwd (samples/s) |"
          " warm loader / model |")
    print("|---|---|---|---|---|---|")
    for path in args.configs:
        config = load_config(path)
        task = get_task(config.task)(config)
        train_set = task.build_dataset(dataset, args.data, ids, train=True)
        cold, warm = loader_rate(train_set, config.train.batch_size, args.workers)
        model = model_rate(task, train_set, config.train.batch_size, args.steps)
        print(f"| {path} | {len(train_set)} | {cold:.1f} | {warm:.1f} | {model:.1f} | {warm / model:.1f}x |")


if __name__ == "__main__":
    main()
