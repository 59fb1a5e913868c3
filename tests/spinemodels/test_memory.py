"""The memory preflight of ``spine train``: refuses in one line what cannot fit, passes what can, leaves the
network untouched, and its estimate is close to a measured peak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spinedata.errors import SpineError
from spinemodels import memory
from spinemodels.catalog import config_from_dict, get_task
from spinemodels.rundir import RunDir
from spinemodels.training import make_optimizer, train
from tests.helpers.spinemodels_fakes import make_fake_dataset, one_torch_thread  # noqa: F401
from tests.helpers.tiny_runs import TINY

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake():
    return make_fake_dataset(n_studies=4, seed=3, size=32, n_sag=10)


def one_epoch(task: str = "slice_finder", *extra: str):
    return config_from_dict(TINY[task], ["train.epochs=1", *extra])


def test_a_step_larger_than_the_available_memory_is_refused_in_one_line(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)
    with pytest.raises(memory.InsufficientMemoryError) as info:
        train(one_epoch(), fake, tmp_path / "run", progress=False)
    message = str(info.value)
    assert isinstance(info.value, SpineError) and "\n" not in message
    assert message.startswith("a training step of slice_finder needs about ")
    assert "at batch 3 (activations " in message and "adamw states" in message
    assert "but 0.0 GiB of cpu memory is available" in message
    assert "; set model.grad_checkpointing=true, lower train.batch_size or data.image_size" in message
    assert "--set train.memory_check=false" in message
    assert not (RunDir(tmp_path / "run").fold_dir(0) / "last.pt").exists()  # refused before the first step


def test_a_step_that_fits_trains_and_the_check_can_be_switched_off(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**40)
    assert RunDir(train(one_epoch(), fake, tmp_path / "fits", progress=False).path).trained_folds() == [0]
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)
    run = train(one_epoch("slice_finder", "train.memory_check=false"), fake, tmp_path / "off", progress=False)
    assert run.trained_folds() == [0]


def test_unknown_available_memory_skips_the_comparison(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    assert train(one_epoch("keypoints"), fake, tmp_path / "run", progress=False).trained_folds() == [0]


def test_mem_available_reads_meminfo_and_says_none_without_it(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683148 kB\nMemFree:        1000 kB\nMemAvailable:   20971520 kB\n")
    assert memory.mem_available(meminfo) == 20 * 2**30
    meminfo.write_text("MemTotal:       24683148 kB\n")
    assert memory.mem_available(meminfo) is None
    assert memory.mem_available(tmp_path / "absent") is None


def small_slice_finder(size: int = 128, slices: int = 6, checkpointing: bool = False):
    config = config_from_dict(TINY["slice_finder"], [f"data.image_size={size}", f"data.n_slices={slices}",
                                                     f"model.grad_checkpointing={str(checkpointing).lower()}"])
    task = get_task("slice_finder")(config)
    torch.manual_seed(0)
    network = task.build_network()
    batch = {"image": torch.rand(2, slices, size, size), "mask": torch.ones(2, slices, dtype=torch.bool),
             "target": torch.tensor([[1, 2, 3, 4, 5], [0, 1, 2, 3, -1]])}
    return task, network, batch


def test_the_probe_leaves_weights_statistics_gradients_and_random_state_alone():
    task, network, batch = small_slice_finder(checkpointing=True)
    optimizer, _ = make_optimizer(network, task.config.optim, 1)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    rng = torch.get_rng_state()
    network.eval()
    estimate = memory.estimate_step(task, network, optimizer, batch, 4, torch.device("cpu"))
    assert estimate.activations > 0 and not network.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert all(p.grad is None for p in network.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_pixels_extrapolate_like_a_full_size_probe_and_batches_scale():
    task, network, batch = small_slice_finder(size=160)
    sample = memory.first_sample(batch)
    cpu = torch.device("cpu")
    full = memory.probe_saved(task, network, sample, cpu, amp=False, channels_last=False, backward=False)
    extrapolated = memory.activation_bytes(task, network, sample, cpu, amp=False, channels_last=False,
                                           backward=False)
    assert extrapolated.activations == pytest.approx(full.activations, rel=0.05)
    optimizer, _ = make_optimizer(network, task.config.optim, 1)
    one = memory.estimate_step(task, network, optimizer, batch, 1, cpu)
    eight = memory.estimate_step(task, network, optimizer, batch, 8, cpu)
    assert eight.activations == 8 * one.activations
    params = sum(p.numel() for p in network.parameters()) * 4
    assert one.gradients == params and one.optimizer_states == 2 * params  # AdamW: two states per weight


def test_only_images_are_cut_for_the_probe():
    batch = {"image": torch.zeros(2, 3, 100, 80), "points": torch.zeros(2, 5, 100), "mask": torch.ones(2, 100, 100, dtype=torch.bool),
             "small": torch.zeros(2, 3, 48, 48), "ids": ["a", "b"]}
    cut = memory.crop_images(memory.first_sample(batch), 32)
    assert cut["image"].shape == (1, 3, 32, 32) and cut["small"].shape == (1, 3, 48, 48)
    assert cut["points"].shape == (1, 5, 100) and cut["mask"].shape == (1, 100, 100)  # not floating-point images
    assert cut["ids"] == ["a"]


class FixedSizeTask:
    """A network that only takes 100 x 100 images (like a ViT without dynamic sizes)."""

    def forward(self, network, batch):
        return network(batch["image"])


def test_a_network_that_cannot_take_smaller_images_is_a_one_line_error():
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100 * 100, 2))
    with pytest.raises(memory.MemoryEstimateError) as info:
        memory.activation_bytes(FixedSizeTask(), network, {"image": torch.zeros(1, 1, 100, 100)},
                                torch.device("cpu"), amp=False, channels_last=False, backward=False)
    message = str(info.value)
    assert message.startswith("the memory estimate could not run the network on images cut to 32 px (RuntimeError: ")
    assert message.endswith("skip it with --set train.memory_check=false") and "\n" not in message


def test_checkpointing_lowers_the_estimate():
    """resnet10t checkpoints its four stages, not its stem: 0.82 of the activations remain at 128 px."""
    estimates = []
    for checkpointing in (False, True):
        task, network, batch = small_slice_finder(checkpointing=checkpointing)
        optimizer, _ = make_optimizer(network, task.config.optim, 1)
        estimates.append(memory.estimate_step(task, network, optimizer, batch, 4, torch.device("cpu")).activations)
    assert estimates[1] < 0.9 * estimates[0]


MEASURE = """
import json, sys, torch
from pathlib import Path
from tests.spinemodels.test_memory import small_slice_finder
from spinemodels import memory
from spinemodels.training import make_optimizer
torch.set_num_threads(1)
task, network, batch = small_slice_finder(size=192, slices=8)
batch = {k: v.repeat(2, *[1] * (v.ndim - 1)) for k, v in batch.items()}  # 4 samples
optimizer, _ = make_optimizer(network, task.config.optim, 1)
def kib(field):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
before = kib("VmRSS:")
Path("/proc/self/clear_refs").write_text("5")
task.loss(task.forward(network, batch), batch).backward()
optimizer.step()
measured = (kib("VmHWM:") - before) * 1024
estimate = memory.estimate_step(task, network, optimizer, batch, 4, torch.device("cpu"))
print(json.dumps({"measured": measured, "estimated": estimate.peak - estimate.weights}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS needs Linux /proc")
def test_the_estimate_is_within_a_third_of_a_measured_peak():
    """One step of a small slice finder (4 studies of 8 slices at 192 px, resnet10t) in a fresh process:
    peak resident memory over that before the step, against the estimate (weights were resident before)."""
    done = subprocess.run([sys.executable, "-c", MEASURE], cwd=REPO, capture_output=True, text=True, check=True,
                          env={"OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}:{REPO / 'tests'}",
                               "PATH": "/usr/bin:/bin"})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["measured"] > 200 * 2**20  # large enough that the interpreter's own growth does not matter
    assert 0.75 < result["measured"] / result["estimated"] < 1.33, result
