"""Keypoints as heatmaps: Gaussian targets, a spatial-softmax loss, sub-pixel reading of points.

Points are (row, col) in the heatmap's pixel grid (pixel centres at integers).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

WINDOW_SIGMAS = 3.0
"""Half-width of the window (in sigmas) around the peak over which a point is read."""


def gaussian_heatmaps(points: torch.Tensor, shape: tuple[int, int], sigma: float) -> torch.Tensor:
    """(..., L, 2) (row, col) points -> (..., L, H, W) Gaussians normalised to sum 1 over each map."""
    rows = torch.arange(shape[0], dtype=torch.float32, device=points.device)
    cols = torch.arange(shape[1], dtype=torch.float32, device=points.device)
    dr = (rows - points[..., 0:1].float()) ** 2  # (..., L, H)
    dc = (cols - points[..., 1:2].float()) ** 2  # (..., L, W)
    logits = -(dr[..., :, None] + dc[..., None, :]) / (2 * sigma**2)
    return torch.softmax(logits.flatten(-2), dim=-1).view(logits.shape)


def heatmap_loss(logits: torch.Tensor, points: torch.Tensor, valid: torch.Tensor, sigma: float) -> torch.Tensor:
    """KL divergence from the Gaussian target to the spatial softmax of ``logits``, mean over valid maps.

    logits (B, L, H, W); points (B, L, 2) (row, col) in that grid; valid (B, L) bool.
    """
    target = gaussian_heatmaps(points, logits.shape[-2:], sigma).flatten(-2)
    log_p = F.log_softmax(logits.float().flatten(-2), dim=-1)
    terms = target * (torch.log(target.clamp_min(1e-30)) - log_p)
    kl = torch.where(target > 0, terms, torch.zeros_like(terms)).sum(-1)  # (B, L)
    weight = valid.float()
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)


def read_points(logits: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel points from heatmap logits (B, L, H, W) -> ((B, L, 2) (row, col), (B, L) confidence).

    Around the most probable pixel (a window of ``WINDOW_SIGMAS * sigma``, clipped to the map), a quadratic
    is fitted to the log-probability, weighted by the probability; its maximum is the point (exact for a
    Gaussian, even one cut by the border). Where the fit has no maximum inside the window, the probability
    centroid is used. The confidence is the probability mass inside the window.
    """
    b, n, h, w = logits.shape
    log_p = torch.log_softmax(logits.detach().double().flatten(-2), dim=-1).view(b, n, h, w).cpu().numpy()
    radius = max(1, math.ceil(WINDOW_SIGMAS * sigma))
    points = np.zeros((b, n, 2))
    mass = np.zeros((b, n))
    for i in range(b):
        for j in range(n):
            points[i, j], mass[i, j] = _fit_peak(log_p[i, j], radius)
    return torch.from_numpy(points).float(), torch.from_numpy(mass).float()


def peak_candidates(log_p: np.ndarray, sigma: float, k: int) -> list[tuple[np.ndarray, float]]:
    """Up to ``k`` local maxima of one map's log-probability (H, W), strongest first: sub-pixel (row, col)
    and the probability mass around each (see ``read_points``)."""
    radius = max(1, math.ceil(WINDOW_SIGMAS * sigma))
    tensor = torch.from_numpy(log_p)[None, None]
    pooled = F.max_pool2d(tensor, 2 * radius + 1, stride=1, padding=radius)[0, 0].numpy()
    rows, cols = np.nonzero(log_p >= pooled)
    order = np.argsort(-log_p[rows, cols], kind="stable")[:k]
    return [_fit_peak(log_p, radius, (int(rows[i]), int(cols[i]))) for i in order]


def _fit_peak(log_p: np.ndarray, radius: int, peak: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """(row, col) of the maximum of a weighted quadratic fit of ``log_p`` (H, W) around its peak (or
    ``peak``); the probability mass in the window."""
    h, w = log_p.shape
    r0, c0 = peak if peak is not None else np.unravel_index(int(np.argmax(log_p)), log_p.shape)
    rows = np.arange(max(r0 - radius, 0), min(r0 + radius, h - 1) + 1)
    cols = np.arange(max(c0 - radius, 0), min(c0 + radius, w - 1) + 1)
    dr, dc = np.meshgrid(rows - r0, cols - c0, indexing="ij")
    values = log_p[np.ix_(rows, cols)]
    weight = np.exp(values)
    total = float(weight.sum())
    centroid = np.array([r0 + (weight * dr).sum() / total, c0 + (weight * dc).sum() / total])
    dr, dc, values, weight = dr.ravel(), dc.ravel(), values.ravel(), np.sqrt(weight.ravel() / total)
    design = np.stack([np.ones_like(dr), dr, dc, dr * dr, dc * dc, dr * dc], axis=1).astype(np.float64)
    if len(values) < design.shape[1]:
        return centroid, total
    coef, *_ = np.linalg.lstsq(design * weight[:, None], values * weight, rcond=None)
    hessian = np.array([[2 * coef[3], coef[5]], [coef[5], 2 * coef[4]]])
    if not np.all(np.linalg.eigvalsh(hessian) < 0):
        return centroid, total
    offset = -np.linalg.solve(hessian, coef[1:3])
    if np.any(np.abs(offset) > radius):
        return centroid, total
    return np.array([r0 + offset[0], c0 + offset[1]]), total
