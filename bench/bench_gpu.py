"""GPU readiness: a few mixed-precision (AMP) training steps of each reference config on CUDA, images/second.

    .venv/bin/python bench/bench_gpu.py --data train.zarr            # your ingested training store
    .venv/bin/python bench/bench_gpu.py --synth 8                     # or: 8 synthetic studies made here first

For every ``pkg:<name>`` (``spinemodels/configs/<name>.yaml``) (the reference settings; the master model needs trained graders and is
left out) it builds the task's dataset and network exactly as ``spine train`` does, then runs the training
step of ``spinemodels.trainer.fit`` (autocast bfloat16 where supported, else float16 with a gradient scaler;
channels-last inputs): ``--warmup`` steps untimed, then ``--steps`` timed steps with batches already on the
GPU (so the figure is the GPU's rate, not the loader's). It prints, per config, samples/s, 2D images/s
(a sample holds several slices or crops), the peak GPU memory and whether the loss stayed finite.
Exits with a clear message and status 2 when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = ("slice_finder", "keypoints", "grade_spinal", "grade_foraminal", "grade_subarticular")


def images_per_sample(batch: dict) -> int:
    """2D images in one sample: the image tensor's elements over its last two (spatial) dimensions."""
    image = batch["image"]
    return int(image[0].numel() // (image.shape[-1] * image.shape[-2]))


def bench_config(name: str, store: str, steps: int, warmup: int, batch_size: int | None,
                 device: torch.device) -> dict:
    import spinedata
    from spinemodels.catalog import get_task, load_config
    from spinemodels.trainer import autocast, to_device

    config = load_config(f"pkg:{name}", [])
    dataset = spinedata.open_dataset(store)
    task = get_task(config.task)(config)
    ids = [str(s) for s in dataset.study_ids]
    torch_data = task.build_dataset(dataset, store, ids, True)
    size = batch_size or config.train.batch_size
    loader = torch.utils.data.DataLoader(torch_data, batch_size=size, shuffle=True, num_workers=min(4, os.cpu_count() or 1),
                                         drop_last=True)
    batches = [to_device(b, device, config.train.channels_last) for _, b in zip(range(min(4, len(loader))), loader,
                                                                                   strict=False)]
    if not batches:
        raise SystemExit(f"{name}: the store gives fewer than {size} samples; use more studies or --batch-size")
    network = task.build_network(pretrained=False).to(device)
    if config.train.channels_last:
        network = network.to(memory_format=torch.channels_last)
    network.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.optim.lr)
    on_cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=on_cuda and not torch.cuda.is_bf16_supported())
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = []

    def step(batch: dict) -> None:
        with autocast(device, on_cuda):
            loss = task.loss(task.forward(network, batch), batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))

    for i in range(warmup):
        step(batches[i % len(batches)])
    sync()
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    sync()
    seconds = time.perf_counter() - start
    samples = steps * task.batch_size_of(batches[0])
    return {"config": name, "batch": task.batch_size_of(batches[0]), "samples_per_s": samples / seconds,
            "images_per_s": samples * images_per_sample(batches[0]) / seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_cuda else math.nan,
            "finite": all(math.isfinite(v) for v in losses),
            "dtype": ("bfloat16" if torch.cuda.is_bf16_supported() else "float16 + GradScaler") if on_cuda
            else "float32 (CPU check)"}


def synth_store(n_studies: int, root: Path, workers: int = 4) -> str:
    """``n_studies`` synthetic training studies (seed 0) ingested into ``root/train.zarr``."""
    from spinedata.ingest import ingest
    from spinedata.synth import generate

    generate(root / "data", n_studies, 0, workers=workers)
    ingest(root / "data", root / "train.zarr", split="train", workers=workers)
    return str(root / "train.zarr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="an ingested training store (spine ingest)")
    source.add_argument("--synth", type=int, help="make this many synthetic studies first (in a temporary folder)")
    parser.add_argument("--configs", nargs="+", default=list(REFERENCE), choices=REFERENCE)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="default: each config's train.batch_size")
    parser.add_argument("--cpu-check", action="store_true",
                        help="run the same steps on the CPU in float32: checks the script, measures nothing useful")
    args = parser.parse_args()
    if args.cpu_check:
        device = torch.device("cpu")
        print("CPU check (float32): these figures say nothing about a GPU")
    elif not torch.cuda.is_available():
        print("no CUDA device: torch.cuda.is_available() is False (torch "
              f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}). Run this on a machine with an "
              "NVIDIA GPU and a CUDA build of torch (see pytorch.org); nothing was measured.", file=sys.stderr)
        raise SystemExit(2)
    else:
        device = torch.device("cuda")
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.data or synth_store(args.synth, Path(tmp))
        print("| config | batch | samples/s | images/s | peak GPU memory | AMP dtype | loss finite |")
        print("|---|---|---|---|---|---|---|")
        for name in args.configs:
            r = bench_config(name, store, args.steps, args.warmup, args.batch_size, device)
            print(f"| {r['config']} | {r['batch']} | {r['samples_per_s']:.1f} | {r['images_per_s']:.0f} | "
                  f"{r['peak_gib']:.1f} GiB | {r['dtype']} | {r['finite']} |", flush=True)


if __name__ == "__main__":
    main()
