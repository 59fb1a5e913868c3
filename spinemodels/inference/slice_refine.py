"""Sub-slice refinement of the spinal points: where, across the sagittal slices, is the middle of the canal?

The slice finder and the keypoint UNet give each level a slice and an in-plane point (the middle of the dural
sac at the disc). On a T2 (or STIR) sagittal stack the sac is bright CSF about 15-20 mm wide from left to
right, so it shows on several neighbouring slices, and the slices at its edges hold part of it (partial
volume). Across the slices around the point, every pixel of a short stretch of canal along the spine
(``half_length_mm`` above and below the point, ``half_width_mm`` front and back) has an intensity profile;
each profile is fitted with a bright band ``[x0 - w, x0 + w]`` seen through slices of one slice step's
thickness (``background + amplitude * share of the slice inside the band``); the refined position, in
fractional slice units, is where a robust line of the fitted centres ``x0`` along the canal (weighted by
amplitude over residual) crosses the point: the canal may drift across the slices along the spine when the
patient lies turned (``centre="median"``: the weighted median of the centres instead).

The refinement is kept only when the evidence is clear: enough profiles with a bright band
(``min_contrast`` of the stack's 1st-99th percentile range and ``min_snr`` times the fit's residual), their
centres in agreement (``max_spread`` slices about the line), and the result within ``max_shift`` slices of
the slice finder's estimate. Otherwise the slice finder's slice is kept (e.g. severe stenosis with little CSF
left, a point off the canal, CSF that is dark as on T1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from spinedata import intensity
from spinedata.errors import SpineError

CENTRE_ESTIMATES = ("line", "median")
"""How the band centres of the profiles become one position (``SliceRefineOptions.centre``)."""
HUBER_K = 1.0
"""Residuals beyond this many robust scales count less in the line fit (chosen on validation)."""
HUBER_ROUNDS = 8
"""Reweighting rounds of the line fit (its estimate no longer moves after a few)."""
MIN_SCALE = 0.02
"""Slices: the line fit's robust scale is never taken smaller (the centres lie on a 0.02-slice grid)."""


class SliceRefineError(SpineError):
    """Bad input to the slice refinement."""


@dataclass(frozen=True)
class SliceRefineOptions:
    """Settings of the sub-slice refinement (``spinemodels.inference.locate.locate(slice_refine=...)``)."""

    half_length_mm: float = 30.0  # canal stretch sampled above and below the point, along the spine
    half_width_mm: float = 6.0  # and in front of and behind it (chosen on validation: docs/benchmarks.md)
    step_mm: float = 1.0  # sampling step in the plane
    window: int = 4  # slices on each side of the starting slice
    min_half_width_mm: float = 3.0  # half width of the bright band (the sac), searched in this range
    max_half_width_mm: float = 14.0
    grid_step: float = 0.02  # slices between the band centres tried
    min_contrast: float = 0.15  # band amplitude, as a share of the stack's 1st-99th percentile range
    min_snr: float = 3.0  # and as a multiple of the fit's residual RMS
    min_share: float = 0.3  # share of the sampled profiles that must show a band
    max_spread: float = 0.35  # slices: the weighted median absolute residual of their centres (about the line)
    max_shift: float = 2.0  # slices: largest move from the slice finder's estimate
    second_look: bool = True  # refine again from the point refiner's in-plane points (when it ran)
    centre: str = "line"  # "line": a robust line of the centres along the canal, at the point; "median"

    def __post_init__(self) -> None:
        positive = ("half_length_mm", "step_mm", "grid_step", "max_spread", "max_shift", "min_half_width_mm")
        for name in positive:
            if not getattr(self, name) > 0:
                raise SliceRefineError(f"slice refinement: {name} must be > 0, got {getattr(self, name)}")
        if self.half_width_mm < 0 or self.window < 2:
            raise SliceRefineError("slice refinement: half_width_mm must be >= 0 and window >= 2")
        if self.max_half_width_mm <= self.min_half_width_mm:
            raise SliceRefineError("slice refinement: max_half_width_mm must exceed min_half_width_mm")
        if self.centre not in CENTRE_ESTIMATES:
            raise SliceRefineError(f"slice refinement: centre must be one of {CENTRE_ESTIMATES}, got {self.centre!r}")
        if not 0 < self.min_share <= 1:
            raise SliceRefineError(f"slice refinement: min_share must be in (0, 1], got {self.min_share}")


@dataclass(frozen=True)
class Refinement:
    """The outcome for one point: the fractional slice, and whether it was used (else why not)."""

    position: float  # fractional slice index (the starting estimate when not used)
    used: bool
    spread: float  # slices (NaN without any band)
    share: float  # share of profiles with a band
    reason: str = ""  # why the refinement was not used


def percentile_scaled(volume: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """(n, r, c) -> float32 with the stack's ``low`` and ``high`` percentiles at 0 and 1 (not clipped)."""
    return intensity.percentile_scaled(volume, (low, high), clip=False)


def band_design(ks: np.ndarray, centres: np.ndarray, half_widths: np.ndarray) -> np.ndarray:
    """(C, W, K) share of each slice ``ks`` (one slice step thick, centred on ``k``) inside the band
    ``[c - w, c + w]`` for every centre ``c`` and half width ``w`` (all in slice units)."""
    low = np.maximum(ks[None, None, :] - 0.5, (centres[:, None] - half_widths[None, :])[..., None])
    high = np.minimum(ks[None, None, :] + 0.5, (centres[:, None] + half_widths[None, :])[..., None])
    return np.clip(high - low, 0.0, 1.0)


def fit_band_centres(profiles: np.ndarray, ks: np.ndarray, half_widths: np.ndarray,
                     grid_step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares bright band for each profile.

    ``profiles``: (P, K) intensities at slices ``ks`` (K consecutive integers). Returns, per profile, the
    band centre (slices; kept one slice inside the window), its amplitude (>= 0) and the residual RMS.
    """
    profiles = np.asarray(profiles, dtype=np.float64)
    ks = np.asarray(ks, dtype=np.float64)
    if profiles.ndim != 2 or profiles.shape[1] != len(ks) or len(ks) < 4:
        raise SliceRefineError(f"profiles must be (P, K) with K = len(ks) >= 4, got {profiles.shape}, K={len(ks)}")
    centres = np.arange(ks[0] + 1.0, ks[-1] - 1.0 + 1e-9, grid_step)
    design = band_design(ks, centres, np.asarray(half_widths, dtype=np.float64)).reshape(-1, len(ks))
    design = design - design.mean(1, keepdims=True)
    centred = profiles - profiles.mean(1, keepdims=True)
    variance = np.maximum((design * design).sum(1), 1e-9)  # (G,)
    cross = np.maximum(design @ centred.T, 0.0)  # (G, P); a bright band only (amplitude >= 0)
    # the best amplitude is cross / variance, which takes cross^2 / variance off the sum of squares
    explained = cross * cross / variance[:, None]
    best = explained.argmax(0)  # (P,)
    columns = np.arange(profiles.shape[0])
    residual = (centred * centred).sum(1) - explained[best, columns]
    rms = np.sqrt(np.maximum(residual, 0.0) / len(ks))
    return centres[best // len(half_widths)], cross[best, columns] / variance[best], rms


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of ``values`` with non-negative ``weights`` (the lower one at a tie)."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def line_centre(centres: np.ndarray, along_mm: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """The value at ``along_mm`` 0 of a line ``centre = c0 + c1 * along`` fitted to the band centres by
    weighted least squares with Huber weights (``HUBER_K`` times the residuals' robust scale, a few rounds),
    and the residuals: a canal that drifts across the slices along the spine (a rotated patient) is measured
    at the point. The weighted median when the centres do not reach both sides of the point."""
    if not (along_mm.min() < 0 < along_mm.max()):
        position = weighted_median(centres, weights)
        return position, centres - position
    design = np.stack([np.ones_like(along_mm), along_mm], axis=1)
    current = weights
    for _ in range(HUBER_ROUNDS):
        root = np.sqrt(current)
        beta = np.linalg.lstsq(design * root[:, None], centres * root, rcond=None)[0]
        residual = centres - design @ beta
        scale = max(1.4826 * float(np.median(np.abs(residual))), MIN_SCALE)
        current = weights * np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(residual), 1e-12))
    return float(beta[0]), residual


def canal_direction(points_mm: np.ndarray, j: int) -> np.ndarray:
    """Unit in-plane direction (mm, (row, col)) of the canal at level ``j`` from its neighbouring levels'
    points ``points_mm`` (L, 2): the chord between the levels on either side (one-sided at the ends)."""
    if len(points_mm) < 2:
        raise SliceRefineError("the canal's direction needs at least two levels")
    a, b = points_mm[max(j - 1, 0)], points_mm[min(j + 1, len(points_mm) - 1)]
    chord = b - a
    norm = float(np.linalg.norm(chord))
    return chord / norm if norm > 0 else np.array([1.0, 0.0])


def canal_grid(options: SliceRefineOptions) -> tuple[np.ndarray, np.ndarray]:
    """The sampling grid's offsets (mm) along the canal (A,) and across it (B,)."""
    along = np.arange(-options.half_length_mm, options.half_length_mm + 1e-9, options.step_mm)
    across = np.arange(-options.half_width_mm, options.half_width_mm + 1e-9, options.step_mm)
    return along, across


def sample_canal(volume: np.ndarray, ks: np.ndarray, centre_rc: np.ndarray, direction_mm: np.ndarray,
                 pixel_spacing: tuple[float, float], options: SliceRefineOptions) -> np.ndarray:
    """(P, K) bilinear samples of slices ``ks`` on a grid around ``centre_rc`` (pixels): along the canal
    (``direction_mm``, unit in mm) and across it, ``options.step_mm`` apart (``canal_grid``; P = A * B, the
    along offset varying slowest)."""
    spacing = np.asarray(pixel_spacing, dtype=np.float64)
    along, across = canal_grid(options)
    normal = np.array([-direction_mm[1], direction_mm[0]])
    offsets_mm = along[:, None, None] * direction_mm + across[None, :, None] * normal  # (A, B, 2)
    rc = np.asarray(centre_rc, dtype=np.float64) + offsets_mm.reshape(-1, 2) / spacing
    samples = [map_coordinates(volume[int(k)], rc.T, order=1, mode="nearest") for k in ks]
    return np.stack(samples, axis=1)


def refine_slice(volume: np.ndarray, start: float, centre_rc: np.ndarray, direction_mm: np.ndarray,
                 pixel_spacing: tuple[float, float], slice_spacing: float,
                 options: SliceRefineOptions | None = None) -> Refinement:
    """Refine one spinal point's slice (see the module's docstring).

    ``volume``: the stack (n, rows, cols), scaled so that 0-1 is its 1st-99th percentile range;
    ``start``: the slice finder's (fractional) slice; ``centre_rc``: the point (row, col) in pixels;
    ``direction_mm``: the canal's in-plane direction; ``slice_spacing``: mm between slices.
    """
    options = options or SliceRefineOptions()
    if volume.ndim != 3:
        raise SliceRefineError(f"volume must be (slices, rows, cols), got shape {volume.shape}")
    if not slice_spacing > 0:
        raise SliceRefineError(f"slice_spacing must be > 0, got {slice_spacing}")
    n = volume.shape[0]
    k0 = int(np.clip(round(start), 0, n - 1))
    ks = np.arange(max(0, k0 - options.window), min(n, k0 + options.window + 1))
    if len(ks) < 5:
        return Refinement(float(start), False, np.nan, 0.0, f"only {len(ks)} slices around the point")
    profiles = sample_canal(volume, ks, centre_rc, direction_mm, pixel_spacing, options)
    half_widths = np.arange(options.min_half_width_mm, options.max_half_width_mm + 1e-9, 0.5) / slice_spacing
    centres, amplitude, rms = fit_band_centres(profiles, ks, half_widths, options.grid_step)
    band = (amplitude >= options.min_contrast) & (amplitude >= options.min_snr * rms)
    share = float(band.mean())
    if share < options.min_share:
        return Refinement(float(start), False, np.nan, share, f"a bright band in only {share:.0%} of the profiles")
    weights = amplitude[band] / (rms[band] + 0.02)
    if options.centre == "line":
        along_mm, across_mm = canal_grid(options)
        along = np.repeat(along_mm, len(across_mm))  # sample_canal's order
        position, residual = line_centre(centres[band], along[band], weights)
    else:
        position = weighted_median(centres[band], weights)
        residual = centres[band] - position
    spread = weighted_median(np.abs(residual), weights)
    if spread > options.max_spread:
        return Refinement(float(start), False, spread, share, f"band centres disagree ({spread:.2f} slices)")
    if abs(position - start) > options.max_shift:
        return Refinement(float(start), False, spread, share,
                          f"band centre {position - start:+.2f} slices from the slice finder's")
    return Refinement(position, True, spread, share)


def smoothed_to_step(volume: np.ndarray, pixel_spacing: tuple[float, float], step_mm: float) -> np.ndarray:
    """(n, r, c) smoothed in-plane (Gaussian, sigma half a sampling step) along each axis whose pixels are
    finer than ``step_mm``, so that the sampled profiles (and the percentiles that scale them) carry about
    the same noise whatever the matrix; unchanged when the pixels are that coarse already."""
    from scipy.ndimage import gaussian_filter

    sigma = [0.0] + [0.5 * step_mm / float(s) if float(s) < step_mm else 0.0 for s in pixel_spacing]
    if not any(sigma):
        return volume
    return gaussian_filter(np.asarray(volume, dtype=np.float32), sigma)


def prepared_volume(volume: np.ndarray, pixel_spacing: tuple[float, float], step_mm: float) -> np.ndarray:
    """The stack as the refinement reads it: smoothed to the sampling step (``smoothed_to_step``) and scaled
    to its 1st-99th percentiles."""
    return percentile_scaled(smoothed_to_step(volume, pixel_spacing, step_mm))


def refine_levels(volume: np.ndarray, starts: np.ndarray, points_rc: np.ndarray, pixel_spacing: tuple[float, float],
                  slice_spacing: float, options: SliceRefineOptions | None = None, *,
                  prepared: bool = False) -> list[Refinement]:
    """``refine_slice`` for every level of a stack: ``starts`` (L,) fractional slices, ``points_rc`` (L, 2)
    in pixels; ``volume`` as read (``prepared_volume`` is applied here), or its output with ``prepared``
    (to prepare a stack once for several calls); the canal's direction comes from the neighbouring levels."""
    starts = np.asarray(starts, dtype=np.float64).reshape(-1)
    points_rc = np.asarray(points_rc, dtype=np.float64)
    if points_rc.shape != (len(starts), 2):
        raise SliceRefineError(f"points_rc must be ({len(starts)}, 2), got {points_rc.shape}")
    options = options or SliceRefineOptions()
    scaled = volume if prepared else prepared_volume(volume, pixel_spacing, options.step_mm)
    points_mm = points_rc * np.asarray(pixel_spacing, dtype=np.float64)
    return [refine_slice(scaled, float(start), points_rc[j], canal_direction(points_mm, j), pixel_spacing,
                         slice_spacing, options) for j, start in enumerate(starts)]
