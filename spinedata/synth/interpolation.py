"""Cubic (4-point Lagrange) interpolation from a coarse regular grid to pixels, without BLAS."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def cubic_taps(n: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4-point Lagrange (cubic) interpolation from nodes ``0, step, 2 step, ...`` (pixel units, the last at or
    beyond ``n - 1``) to the ``n`` pixels: ``(nodes (m,), index (n, 4) int, weight (n, 4) float32)``."""
    m = max(4, int(np.ceil((n - 1) / step)) + 1)
    nodes = np.arange(m, dtype=float) * step
    u = np.arange(n, dtype=float) / step
    base = np.clip(np.floor(u).astype(int) - 1, 0, m - 4)
    index = base[:, None] + np.arange(4)[None, :]
    weight = np.ones((n, 4))
    for k in range(4):
        for j in range(4):
            if j != k:
                weight[:, k] *= (u - (base + j)) / (k - j)
    weight = weight.astype(np.float32)
    for array in (nodes, index, weight):
        array.flags.writeable = False  # cached: shared between callers
    return nodes, index, weight


def cubic_upsample(coarse: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Interpolate ``coarse`` (m_r, m_c) to (n_r, n_c) with the taps of ``cubic_taps`` along each axis.

    Written as four multiply-adds per axis (no BLAS: multithreaded BLAS stalls on busy machines).
    """
    index_r, weight_r = rows
    index_c, weight_c = cols
    partial = sum(weight_r[:, k, None] * coarse[index_r[:, k], :] for k in range(4))
    return sum(weight_c[None, :, k] * partial[:, index_c[:, k]] for k in range(4))
