"""Memory of one training step per config: the peak measured on the CPU against the estimate of ``spine
train``'s preflight (``spinemodels.memory``), and that estimate for the config's whole batch, in float32 on
the CPU and with AMP (bfloat16) as on a GPU.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py --synth 3        # 3 synthetic studies made first
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py --data train.zarr --configs pkg:keypoints

Each config runs in a fresh process (Linux only: peaks are read from /proc/self/status):

- measured: one training step (forward, loss, backward, gradient clipping, AdamW step) on ``--samples``
  samples of the store, before anything else runs in the process; the peak resident memory over the
  resident memory just before the step (``/proc/self/clear_refs`` resets the peak). The slice finder's
  stacks are cut to 2 slices (``--slices``; every slice goes through the backbone alone, so memory is
  linear in slices) so that its reference config fits a 24 GB machine; the others are kept whole.
- estimate, same batch: ``memory.estimate_step`` on the same samples, as the preflight runs it (weights
  left out: they are resident before the step); ``ratio`` = measured / estimated.
- estimate, config batch: the whole first sample (every slice) scaled to ``train.batch_size``, in float32
  on the CPU, and under bfloat16 autocast (the GPU's AMP: low-precision activations, float32 weights,
  gradients and AdamW states; its parts are printed below the table). The GPU figure is an estimate:
  CPU autocast runs the convolutions and matrix products in bfloat16 as CUDA's does, but no GPU was
  measured.
- probe: seconds of the estimate on one sample (this CPU); preflight: seconds of ``spine train``'s whole
  preflight on this CPU (a fresh loader with the config's workers gives the first batch, then the
  estimate, then the comparison with MemAvailable; "refused" where it refuses, messages printed below);
  measured step: seconds of the measured step (the first of its process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_gpu import synth_store

REPO = Path(__file__).resolve().parents[1]
TASKS = ("slice_finder", "keypoints", "fine_keypoints", "grade_spinal", "grade_foraminal", "grade_subarticular", "grade_spinal_axial")
REFERENCE = [f"pkg:{n}" for n in TASKS]
CPU = [f"pkg:cpu/{n}" for n in TASKS]
PER_SLICE = ("slice_finder", "grade_spinal", "grade_foraminal", "grade_subarticular", "grade_spinal_axial")
"""Tasks whose ``image`` holds slices on its third-last dimension, each run through the backbone alone."""


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def cut_slices(task_name: str, batch: dict, slices: int | None) -> dict:
    """The batch with its stacks or crops cut to their first ``slices`` slices (per-slice tasks only;
    ``None``: 2 for the slice finder, all for the others)."""
    if slices is None:
        slices = 2 if task_name == "slice_finder" else 0
    if slices <= 0 or task_name not in PER_SLICE:
        return batch
    out = dict(batch)
    out["image"] = batch["image"][..., :slices, :, :].contiguous()
    if task_name == "slice_finder":
        out["mask"] = batch["mask"][:, :slices]
        out["target"] = torch.where(batch["target"] < slices, batch["target"], -1)
    return out


def measure_one(config_path: str, store: str, samples: int, slices: int | None, overrides: list[str]) -> dict:
    import spinedata
    from spinemodels.catalog import get_task, load_config
    from spinemodels.memory import GIB, describe, estimate_step
    from spinemodels.training import make_optimizer

    torch.manual_seed(0)
    config = load_config(config_path if config_path.startswith("pkg:") else REPO / config_path, overrides)
    task = get_task(config.task)(config)
    dataset = spinedata.open_dataset(store)
    ids = [str(s) for s in dataset.study_ids]
    data = task.build_dataset(dataset, store, ids, True)
    items = [data[(i % len(data), 0, 0)] for i in range(max(samples, 1))]
    full = torch.utils.data.default_collate(items)
    batch = cut_slices(config.task, full, slices)
    network = task.build_network(pretrained=False)
    network.train()
    optimizer, _ = make_optimizer(network, config.optim, config.train.epochs)
    cpu = torch.device("cpu")

    before = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    loss = task.loss(task.forward(network, batch), batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(network.parameters(), config.optim.grad_clip)
    optimizer.step()
    measured = (status_kib("VmHWM") - before) * 1024
    step_s = time.perf_counter() - start
    del loss

    same = estimate_step(task, network, optimizer, batch, samples, cpu)
    start = time.perf_counter()
    fp32 = estimate_step(task, network, optimizer, full, config.train.batch_size, cpu)
    probe_s = time.perf_counter() - start
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = estimate_step(task, network, optimizer, full, config.train.batch_size, cpu)
    preflight_s, refused = run_preflight(task, network, data)
    image = batch["image"]
    return {"config": config_path + "".join(f" {o}" for o in overrides), "samples": samples,
            "image": list(image.shape[1:]), "measured_gib": measured / GIB,
            "estimated_gib": (same.peak - same.weights) / GIB, "saved_gib": same.activations / GIB, "ratio": measured / (same.peak - same.weights),
            "batch": config.train.batch_size, "cpu_fp32_gib": fp32.peak / GIB, "gpu_amp_gib": amp.peak / GIB,
            "gpu_amp_parts": describe(amp, config.optim.name), "probe_s": probe_s, "step_s": step_s,
            "preflight_s": preflight_s, "refused": refused}


def run_preflight(task, network: torch.nn.Module, data) -> tuple[float, str]:
    """Seconds of ``spine train``'s preflight (first batch from a fresh loader of the config's workers, then
    the estimate) on this machine, and its refusal message, if any."""
    from spinemodels import distributed
    from spinemodels.memory import InsufficientMemoryError, preflight
    from spinemodels.training import make_loader, make_optimizer

    config = task.config
    info = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    loader = make_loader(data, config.train.batch_size, shuffle=True, num_workers=config.train.num_workers,
                         seed=0, info=info)
    optimizer, _ = make_optimizer(network, config.optim, config.train.epochs)
    start = time.perf_counter()
    try:
        preflight(task, network, optimizer, loader, torch.device("cpu"), amp=False, channels_last=False)
    except InsufficientMemoryError as error:
        return time.perf_counter() - start, str(error)
    return time.perf_counter() - start, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="an ingested training store (spine ingest)")
    parser.add_argument("--synth", type=int, help="make this many synthetic studies first (in a temporary folder)")
    parser.add_argument("--configs", nargs="+", default=REFERENCE + CPU)
    parser.add_argument("--samples", type=int, default=1, help="samples of the measured step")
    parser.add_argument("--slices", type=int, default=None,
                        help="slices kept per stack or crop in the measured step; 0: all (default: 2 for the slice "
                             "finder's 30-slice stacks, all for the others)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.data, args.samples, args.slices, args.overrides)))
        return
    if not (args.data or args.synth):
        parser.error("give --data or --synth")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.data or synth_store(args.synth, Path(tmp), workers=2)
        kept = {None: "2 (slice finder), all (others)", 0: "all"}.get(args.slices, args.slices)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); slices per stack/crop in the "
              f"measured step: {kept}")
        print("| config | measured sample | measured peak | estimate | measured / estimate | batch | "
              "estimate, CPU fp32 | estimate, GPU AMP | probe | preflight | measured step |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        refusals, parts_of = [], []
        for config in args.configs:
            slices = [] if args.slices is None else ["--slices", str(args.slices)]
            command = [sys.executable, __file__, "--one", config, "--data", store, "--samples", str(args.samples),
                       *slices, *[f"--set={o}" for o in args.overrides]]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"| {config} | failed: {done.stderr.strip().splitlines()[-1:]} |", flush=True)
                refusals.append("")
                parts_of.append("failed")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {r['config']} | {r['samples']} x {r['image']} | {r['measured_gib']:.2f} GiB | "
                  f"{r['estimated_gib']:.2f} GiB | {r['ratio']:.2f} | {r['batch']} | {r['cpu_fp32_gib']:.1f} GiB | "
                  f"{r['gpu_amp_gib']:.1f} GiB | {r['probe_s']:.2f} s | {r['preflight_s']:.2f} s"
                  f"{' (refused)' if r['refused'] else ''} | {r['step_s']:.2f} s |", flush=True)
            refusals.append(r["refused"])
            parts_of.append(r["gpu_amp_parts"])
        print("\nGPU AMP estimates, parts:")
        for name, parts in zip(args.configs, parts_of, strict=True):
            print(f"- {name}: {parts}")
        for message in filter(None, refusals):
            print(f"error: {message}")


if __name__ == "__main__":
    main()
