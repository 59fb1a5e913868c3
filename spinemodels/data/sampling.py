"""Reproducible sampling: every training sample knows (seed, epoch, index), so its augmentation is the same
with or without worker processes, on one GPU or several, and after resuming."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(index, seed, epoch)`` keys: a permutation drawn from (seed, epoch) when shuffling, sharded
    over ``world_size`` processes (padded by repetition so every process gets as many)."""

    def __init__(self, n: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, seed, shuffle, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle \
            else np.arange(self.n)
        total = len(self) * self.world_size
        if total > self.n:
            order = np.concatenate([order, order[: total - self.n]])
        for i in order[self.rank:: self.world_size]:
            yield int(i), self.seed, self.epoch


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation keys ``(index, seed, 0)`` of one process's share: the ``rank``-th of ``world_size``
    contiguous blocks, in order, nothing repeated; the blocks of ranks 0, 1, ... put together are
    ``0..n-1`` in order (so gathered predictions come in the single-process order)."""

    def __init__(self, n: int, *, seed: int, rank: int = 0, world_size: int = 1):
        self.seed = seed
        self.start, self.stop = shard_bounds(n, rank, world_size)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        for i in range(self.start, self.stop):
            yield i, self.seed, 0


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of the ``rank``-th of ``world_size`` contiguous, nearly equal blocks of ``0..n-1``."""
    return rank * n // world_size, (rank + 1) * n // world_size


def unpack_index(index) -> tuple[int, np.random.Generator]:
    """``index`` from a DataLoader (an int, or a key of ``EpochSampler``) -> (sample index, its own RNG)."""
    if isinstance(index, tuple | list):
        i, seed, epoch = (int(v) for v in index)
        return i, np.random.default_rng([seed, epoch, i])
    return int(index), np.random.default_rng(int(index))
