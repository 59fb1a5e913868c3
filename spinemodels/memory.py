"""Memory preflight of ``spine train``: estimate a training step's peak memory from one sample and refuse,
in one line, a run that cannot fit its device, instead of letting the kernel (or CUDA) kill it mid-epoch.

The estimate: weights + gradients + optimiser states + the activations autograd saves for backward
(counted with ``torch.autograd.graph.saved_tensors_hooks`` on a forward of one sample of the first
training batch, under the run's device, autocast and memory format), times the batch size, times
``WORKSPACE`` for the transient buffers of backward. Large images are probed at two reduced sizes and
extrapolated linearly in pixels, so the probe stays cheap. Its accuracy against measured peaks is in
docs/benchmarks.md ("Memory").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spinedata.errors import SpineError

GIB = 2**30
PROBE_SIDE = 64
"""Images with a side larger than ``2 * PROBE_SIDE`` are probed at sides ``PROBE_SIDE`` and ``2 * PROBE_SIDE``."""
WORKSPACE = 1.3
"""Peak over saved activations: backward's transient gradients and buffers (measured, docs/benchmarks.md)."""


class InsufficientMemoryError(SpineError):
    """A training step's estimated peak memory exceeds what the device has available."""


@dataclass
class StepEstimate:
    """Bytes of one training step at ``batch_size`` samples."""

    batch_size: int
    activations: int  # saved for backward, whole batch
    weights: int
    gradients: int
    optimizer_states: int
    held: int = 0  # of the above, already allocated (weights, restored optimiser states)

    @property
    def peak(self) -> int:
        """Estimated peak of the step: weights, gradients, optimiser states and activations with workspace."""
        return self.weights + self.gradients + self.optimizer_states + int(self.activations * WORKSPACE)

    @property
    def needed(self) -> int:
        """What the step still has to allocate beyond what is allocated now."""
        return self.peak - self.held


@dataclass
class Saved:
    """Bytes autograd saved during a forward: per-sample activations, and copies of the weights (autocast's
    low-precision casts), which do not grow with the batch."""

    activations: int
    weight_copies: int


def _is_weight_copy(tensor: torch.Tensor) -> bool:
    """A cast of a parameter (autocast): its only autograd input is a leaf."""
    fn = tensor.grad_fn
    if fn is None or fn.name() != "ToCopyBackward0":
        return False
    return all(type(f).__name__ == "AccumulateGrad" for f, _ in fn.next_functions if f is not None)


def saved_tensor_bytes(run: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> Saved:
    """Bytes of the distinct storages autograd saves for backward while ``run()`` executes; storages of
    ``exclude`` (parameters, buffers) left out. The graph cannot be backwarded; the counted tensors are
    held until ``run`` returns (as in training), so no freed address is reused and counted twice or missed."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, tuple[int, bool]] = {}
    alive: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> int:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and ptr not in seen:
            seen[ptr] = storage.nbytes(), _is_weight_copy(tensor)
            alive.append(tensor.detach())
        return 0

    def unpack(_: int) -> torch.Tensor:
        raise RuntimeError("the memory probe's graph cannot be backwarded")

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack), _reentrant_checkpoints():
        run()
    return Saved(activations=sum(n for n, copy in seen.values() if not copy),
                 weight_copies=sum(n for n, copy in seen.values() if copy))


@contextlib.contextmanager
def _reentrant_checkpoints():
    """timm's gradient checkpointing in its reentrant form, whose saved region inputs the hooks see (the
    non-reentrant form hides them behind its own hooks); a no-op without timm."""
    import sys

    layers = sys.modules.get("timm.layers")
    if layers is None:
        yield
        return
    before = layers.use_reentrant_ckpt()
    layers.set_reentrant_ckpt(True)
    try:
        yield
    finally:
        layers.set_reentrant_ckpt(before)


def _spatial_sides(batch: Any) -> list[int]:
    """Sides of the images in a batch: the last two dimensions of floating tensors of 3 or more dimensions."""
    if isinstance(batch, torch.Tensor):
        return list(batch.shape[-2:]) if batch.is_floating_point() and batch.ndim >= 3 else []
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        return [s for item in batch for s in _spatial_sides(item)]
    return []


def _map_tensors(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_map_tensors(v, fn) for v in batch)
    return batch


def first_sample(batch: Any) -> Any:
    """The batch cut to its first sample (every tensor and list along its first dimension)."""
    if isinstance(batch, dict):
        return {k: first_sample(v) for k, v in batch.items()}
    if isinstance(batch, torch.Tensor | list | tuple):
        return batch[:1]
    return batch


def crop_images(batch: Any, side: int) -> Any:
    """Images (see ``_spatial_sides``) cut to at most ``side`` x ``side`` pixels; other tensors unchanged."""
    def cut(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point() and t.ndim >= 3:
            return t[..., :side, :side].contiguous()
        return t

    return _map_tensors(batch, cut)


def probe_saved(task: Any, network: torch.nn.Module, sample: Any, device: torch.device, *, amp: bool,
                channels_last: bool) -> Saved:
    """Saved bytes of ``task.forward`` on one sample in training mode, as the training step runs it; the
    network's buffers (normalisation statistics), mode and the RNG states are left as they were."""
    from spinemodels.trainer import autocast, to_device

    sample = to_device(sample, device, channels_last)
    buffers = [(b, b.detach().clone()) for b in network.buffers()]
    was_training = network.training
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            network.train()
            with autocast(device, amp):
                return saved_tensor_bytes(lambda: task.forward(network, sample),
                                          [*network.parameters(), *network.buffers()])
    finally:
        network.train(was_training)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def activation_bytes(task: Any, network: torch.nn.Module, sample: Any, device: torch.device, *, amp: bool,
                     channels_last: bool) -> Saved:
    """Saved bytes of one sample at its full size: probed as is when its images are at most
    ``2 * PROBE_SIDE`` pixels a side, else probed at sides ``PROBE_SIDE`` and ``2 * PROBE_SIDE`` and
    extrapolated linearly in pixels (activations of convolutional networks grow with the pixel count)."""
    sides = _spatial_sides(sample)
    full = max(sides, default=0)
    if full <= 2 * PROBE_SIDE:
        return probe_saved(task, network, sample, device, amp=amp, channels_last=channels_last)
    small, large = PROBE_SIDE, 2 * PROBE_SIDE
    a = probe_saved(task, network, crop_images(sample, small), device, amp=amp, channels_last=channels_last)
    b = probe_saved(task, network, crop_images(sample, large), device, amp=amp, channels_last=channels_last)
    per_pixel = (b.activations - a.activations) / (large**2 - small**2)
    return Saved(activations=int(b.activations + per_pixel * (full**2 - large**2)), weight_copies=b.weight_copies)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """(bytes the optimiser's states will take, bytes of them already allocated): Adam and AdamW keep two
    values per trainable weight, SGD with momentum one, others are counted as they stand."""
    held = sum(t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values()
               if isinstance(t, torch.Tensor))
    trainable = sum(p.numel() * p.element_size() for group in optimizer.param_groups for p in group["params"])
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        per_weight = 2
    elif isinstance(optimizer, torch.optim.SGD):
        per_weight = 1 if optimizer.param_groups[0].get("momentum", 0) else 0
    else:
        return held, held
    return max(held, per_weight * trainable), held


def estimate_step(task: Any, network: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any,
                  batch_size: int, device: torch.device, *, amp: bool = False,
                  channels_last: bool = False) -> StepEstimate:
    """Peak memory of one training step of ``batch_size`` samples like the first one of ``batch``."""
    saved = activation_bytes(task, network, first_sample(batch), device, amp=amp, channels_last=channels_last)
    weights = sum(t.numel() * t.element_size() for t in [*network.parameters(), *network.buffers()])
    gradients = sum(p.numel() * p.element_size() for p in network.parameters() if p.requires_grad)
    states, held_states = optimizer_state_bytes(optimizer)
    return StepEstimate(batch_size=batch_size, activations=saved.activations * batch_size + saved.weight_copies,
                        weights=weights, gradients=gradients, optimizer_states=states,
                        held=weights + held_states)


def available_bytes(device: torch.device) -> int | None:
    """Memory the step can still take: CUDA's free memory plus what torch's allocator holds unused; on the
    CPU, ``MemAvailable`` of /proc/meminfo; None where neither is known (the check is then skipped)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        return mem_available(Path("/proc/meminfo"))
    return None


def mem_available(meminfo: Path) -> int | None:
    """``MemAvailable`` of a /proc/meminfo file in bytes; None when the file or the line is absent."""
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def describe(estimate: StepEstimate, optimizer_name: str = "optimiser") -> str:
    """One line: the estimate and its parts in GiB."""
    return (f"about {estimate.peak / GIB:.1f} GiB at batch {estimate.batch_size} (activations "
            f"{estimate.activations * WORKSPACE / GIB:.1f}, weights {estimate.weights / GIB:.2f}, gradients "
            f"{estimate.gradients / GIB:.2f}, {optimizer_name} states {estimate.optimizer_states / GIB:.2f} GiB)")


def preflight(task: Any, network: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Any,
              device: torch.device, *, amp: bool, channels_last: bool) -> StepEstimate | None:
    """Refuse (``InsufficientMemoryError``) a run whose training step cannot fit ``device``'s available
    memory, estimated from the loader's first batch; skipped with ``train.memory_check: false``."""
    config = task.config
    if not config.train.memory_check:
        return None
    with torch.random.fork_rng(devices=[]):  # the loader's iterator draws a seed from the global RNG
        batch = next(iter(loader))
    estimate = estimate_step(task, network, optimizer, batch, config.train.batch_size, device, amp=amp,
                             channels_last=channels_last)
    available = available_bytes(device)
    if available is not None and estimate.needed > available:
        raise InsufficientMemoryError(
            f"a training step of {config.task} needs {describe(estimate, config.optim.name)}, "
            f"{estimate.needed / GIB:.1f} GiB more than is allocated now, but {available / GIB:.1f} GiB of "
            f"{device.type} memory is available; lower train.batch_size or "
            f"data.image_size, or set model.grad_checkpointing=true where the model has it, or skip this "
            f"estimate with --set train.memory_check=false")
    return estimate
