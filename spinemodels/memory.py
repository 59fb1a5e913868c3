"""Memory preflight of ``spine train``: estimate a training step's peak memory from one sample and refuse,
in one line, a run that cannot fit its device, instead of letting the kernel (or CUDA) kill it mid-epoch.

Peak = weights + gradients + optimiser states + ``WORKSPACE`` x the activations autograd saves for backward
(counted on one sample, as the step runs it, times the batch size). How it is measured, its accuracy and its
cost: docs/benchmarks.md, "Memory of a training step".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spinedata.errors import SpineError
from spinemodels.trainer import autocast, to_device

GIB = 2**30
PROBE_SIDES = ((32, 64), (64, 128))
"""Image sides of the two probes of a larger image; the second pair for networks that cannot train on the
first (batch norm over a single value: one image whose features shrink to one pixel)."""
WORKSPACE = 1.3
"""Factor on the saved activations for backward's transient gradients and buffers (chosen on measured peaks)."""


class InsufficientMemoryError(SpineError):
    """A training step's estimated peak memory exceeds what the device has available."""


class MemoryEstimateError(SpineError):
    """The preflight's probe could not run the network on reduced images (e.g. a fixed input size)."""


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


class _Ledger:
    """Bytes of the distinct storages autograd holds for backward, now and at their peak."""

    def __init__(self, skip: set[int]):
        self.skip, self.count, self.size, self.copies = skip, {}, {}, set()
        self.live = self.live_copies = self.peak = self.peak_copies = 0

    def hold(self, tensor: torch.Tensor) -> _Held:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.skip:
            return _Held(tensor, None, self)
        if ptr not in self.count:
            self.count[ptr], self.size[ptr] = 0, storage.nbytes()
            self.live += self.size[ptr]
            if _is_weight_copy(tensor):
                self.copies.add(ptr)
                self.live_copies += self.size[ptr]
            if self.live > self.peak:
                self.peak, self.peak_copies = self.live, self.live_copies
        self.count[ptr] += 1
        return _Held(tensor, ptr, self)

    def release(self, ptr: int) -> None:
        self.count[ptr] -= 1
        if self.count[ptr] == 0:
            size = self.size.pop(ptr)
            self.live -= size
            if ptr in self.copies:
                self.copies.remove(ptr)
                self.live_copies -= size
            del self.count[ptr]


class _Held:
    """A saved tensor as autograd keeps it; the ledger is told when autograd lets it go."""

    __slots__ = ("tensor", "ptr", "ledger")

    def __init__(self, tensor: torch.Tensor, ptr: int | None, ledger: _Ledger):
        self.tensor, self.ptr, self.ledger = tensor, ptr, ledger

    def __del__(self):
        if self.ptr is not None:
            self.ledger.release(self.ptr)


def saved_tensor_bytes(run: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> Saved:
    """Peak bytes of the distinct storages autograd holds for backward while ``run()`` executes (a forward,
    or a forward and its backward), storages of ``exclude`` (parameters, buffers) left out."""
    ledger = _Ledger({t.untyped_storage().data_ptr() for t in exclude})
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(ledger.hold, lambda held: held.tensor), \
            _reentrant_checkpoints():
        run()
    return Saved(activations=ledger.peak - ledger.peak_copies, weight_copies=ledger.peak_copies)


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


def _is_image(t: Any) -> bool:
    """Images the probe may shrink: floating tensors of 3 or more dimensions whose last two exceed 64."""
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.ndim >= 3 and min(t.shape[-2:]) > 64


def _image_shapes(batch: Any) -> list[tuple[int, int]]:
    """(height, width) of every image (``_is_image``) of a batch."""
    if _is_image(batch):
        return [tuple(batch.shape[-2:])]
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        return [shape for item in batch for shape in _image_shapes(item)]
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
    """Images (``_is_image``) cut to at most ``side`` x ``side`` pixels; other tensors unchanged."""
    def cut(t: torch.Tensor) -> torch.Tensor:
        return t[..., :side, :side].contiguous() if _is_image(t) else t

    return _map_tensors(batch, cut)


def checkpointed(network: torch.nn.Module) -> bool:
    """Whether a trained part of the network recomputes its activations in backward (timm's
    ``grad_checkpointing``; frozen parts, such as the master model's graders, keep none)."""
    return any(getattr(m, "grad_checkpointing", False) is True and any(p.requires_grad for p in m.parameters())
               for m in network.modules())


def probe_saved(task: Any, network: torch.nn.Module, sample: Any, device: torch.device, *, amp: bool,
                channels_last: bool, backward: bool) -> Saved:
    """Saved bytes of ``task.forward`` on one sample in training mode, as the training step runs it, and
    with ``backward`` of its backward too (where checkpointed blocks are recomputed). The network's
    buffers (normalisation statistics), gradients, mode and the RNG states are left as they were."""
    sample = to_device(sample, device, channels_last)
    buffers = [(b, b.detach().clone()) for b in network.buffers()]
    grads = [p.grad for p in network.parameters()]
    was_training = network.training
    devices = [device.index or 0] if device.type == "cuda" else []

    def step() -> None:
        outputs = task.forward(network, sample)
        if backward:
            task.loss(outputs, sample).backward()

    try:
        with torch.random.fork_rng(devices=devices):
            network.train()
            with autocast(device, amp):
                return saved_tensor_bytes(step, [*network.parameters(), *network.buffers()])
    finally:
        for parameter, grad in zip(network.parameters(), grads, strict=True):
            parameter.grad = grad
        network.train(was_training)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def activation_bytes(task: Any, network: torch.nn.Module, sample: Any, device: torch.device, *, amp: bool,
                     channels_last: bool, backward: bool) -> Saved:
    """Saved bytes of one sample at its full size: probed as is when it holds no image larger than 64 pixels
    a side, else probed with its images cut to two smaller squares (``PROBE_SIDES``) and extrapolated
    linearly in pixels (the activations of convolutional networks grow with the pixel count)."""
    shapes = _image_shapes(sample)
    kwargs = {"amp": amp, "channels_last": channels_last, "backward": backward}
    if not shapes:
        return probe_saved(task, network, sample, device, **kwargs)
    height, width = max(shapes, key=lambda hw: hw[0] * hw[1])

    def pixels(side: int) -> int:
        return min(height, side) * min(width, side)

    small, large = PROBE_SIDES[0]
    try:
        try:
            a = probe_saved(task, network, crop_images(sample, small), device, **kwargs)
        except ValueError as error:
            if "Expected more than 1 value per channel" not in str(error):
                raise
            small, large = PROBE_SIDES[1]
            a = probe_saved(task, network, crop_images(sample, small), device, **kwargs)
        b = probe_saved(task, network, crop_images(sample, large), device, **kwargs)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, AssertionError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise MemoryEstimateError(
            f"the memory estimate could not run the network on images cut to {small} px "
            f"({type(error).__name__}: {first}); skip it with --set train.memory_check=false") from error
    per_pixel = (b.activations - a.activations) / (pixels(large) - pixels(small))
    return Saved(activations=int(b.activations + per_pixel * (height * width - pixels(large))),
                 weight_copies=b.weight_copies)


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
                  batch_size: int, device: torch.device, *, amp: bool = False, channels_last: bool = False,
                  backward: bool | None = None) -> StepEstimate:
    """Peak memory of one training step of ``batch_size`` samples like the first one of ``batch``; the probe
    runs backward too when ``backward`` is true (default: when the network is ``checkpointed``)."""
    backward = checkpointed(network) if backward is None else backward
    saved = activation_bytes(task, network, first_sample(batch), device, amp=amp, channels_last=channels_last,
                             backward=backward)
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
        batch = next(iter(loader), None)
    if batch is None:  # no training sample: nothing to estimate
        return None
    available = available_bytes(device)
    estimate = None
    # a forward alone is the cheaper probe; a checkpointed network's backward is probed only if that fits
    for backward in sorted({False, checkpointed(network)}):
        estimate = estimate_step(task, network, optimizer, batch, config.train.batch_size, device, amp=amp,
                                 channels_last=channels_last, backward=backward)
        if available is not None and estimate.needed > available:
            fixes = "lower train.batch_size or data.image_size"
            if getattr(config.model, "grad_checkpointing", True) is False:
                fixes = "set model.grad_checkpointing=true, " + fixes
            raise InsufficientMemoryError(
                f"a training step of {config.task} needs {describe(estimate, config.optim.name)}, "
                f"{estimate.needed / GIB:.1f} GiB more than is allocated now, but {available / GIB:.1f} GiB of "
                f"{device.type} memory is available; {fixes}, or skip this estimate with "
                f"--set train.memory_check=false")
    return estimate
