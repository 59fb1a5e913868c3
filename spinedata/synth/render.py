"""Render a planned stack: sample the anatomy at every voxel centre, then add the physics of MR images.

Each slice averages ``SUB_SLICES`` planes spread across its thickness (partial volume), is blurred by a
small point-spread function, shaded by the posterior receive coil, and gets Rician noise (the magnitude of
complex Gaussian noise). Stored values are 16-bit unsigned integers with the series' rescale.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from spinedata.synth.acquisition import SeriesPlan, StackPlan
from spinedata.synth.anatomy import SpineModel
from spinedata.synth.interpolation import cubic_taps, cubic_upsample
from spinedata.synth.painting import labels_on_plane
from spinedata.synth.tissues import signal_table

SUB_SLICES = 3
"""Planes sampled across each slice's thickness, at the centres of its thirds."""
PSF_SIGMA_PX = 0.5
TEXTURE = 0.06
"""Relative amplitude of the smooth multiplicative texture (tissue inhomogeneity) of every slice."""
TEXTURE_SIGMA_MM = 3.0
COIL_FLOOR = 0.45
"""Coil sensitivity far from the posterior coil, relative to the skin."""
UINT16_MAX = 65535


def sub_slice_offsets(thickness: float) -> np.ndarray:
    """Offsets (mm) along the normal of the planes averaged into one slice."""
    return (np.arange(SUB_SLICES) - (SUB_SLICES - 1) / 2) * thickness / SUB_SLICES


def coil_sensitivity(model: SpineModel, stack: StackPlan, index: int, depth_mm: float) -> np.ndarray:
    """Receive sensitivity (rows, cols) in (0, 1] of slice ``index``: ``exp(-d / depth)`` of the distance ``d``
    in front of the back's skin (at L3), floored at ``COIL_FLOOR``; separable along rows and columns."""
    skin = model.unstraighten(0.0, 0.0, model.skin_t)
    back = model.rotation[:, 1]  # posterior direction of the body frame, in patient space
    drow, dcol = stack.pixel_spacing
    start = float(np.dot(skin - stack.positions[index], back))
    rows = np.exp((np.arange(stack.rows) * (drow * float(np.dot(stack.col_dir, back))) - start) / depth_mm)
    cols = np.exp(np.arange(stack.cols) * (dcol * float(np.dot(stack.row_dir, back))) / depth_mm)
    gain = np.minimum(rows[:, None].astype(np.float32) * cols[None, :].astype(np.float32), 1.0)
    return COIL_FLOOR + (1.0 - COIL_FLOOR) * gain


def texture_field(rng: np.random.Generator, rows: int, cols: int, pixel_spacing: tuple[float, float]) -> np.ndarray:
    """Smooth multiplicative texture (rows, cols) around 1 with sd ``TEXTURE``: filtered noise drawn on a grid
    of ``TEXTURE_SIGMA_MM`` / 2 and interpolated to the pixels."""
    steps = [max(1, int(TEXTURE_SIGMA_MM / 2 / spacing)) for spacing in pixel_spacing]
    (nodes_r, *taps_r), (nodes_c, *taps_c) = cubic_taps(rows, steps[0]), cubic_taps(cols, steps[1])
    coarse = gaussian_filter(rng.standard_normal((len(nodes_r), len(nodes_c))).astype(np.float32), 2.0)
    coarse *= TEXTURE / max(float(coarse.std()), 1e-6)
    return 1.0 + cubic_upsample(coarse, taps_r, taps_c)


def render_intensity(model: SpineModel, stack: StackPlan, table: np.ndarray) -> np.ndarray:
    """Noise-free intensities (n, rows, cols) float32: tissue signal averaged across each slice's thickness."""
    offsets = sub_slice_offsets(stack.thickness)
    out = np.empty((len(stack.positions), stack.rows, stack.cols), np.float32)
    drow, dcol = stack.pixel_spacing
    row_step, col_step = drow * stack.col_dir, dcol * stack.row_dir
    for i, position in enumerate(stack.positions):
        total = np.zeros((stack.rows, stack.cols), np.float32)
        for offset in offsets:
            labels = labels_on_plane(model, position + offset * stack.normal, row_step, col_step, stack.rows, stack.cols)
            total += table[labels]
        out[i] = total / len(offsets)
    return out


def render_stack(model: SpineModel, stack: StackPlan, table: np.ndarray, rng: np.random.Generator,
                 noise: float, coil_depth_mm: float) -> np.ndarray:
    """Magnitude image (n, rows, cols) float32 in units of CSF-on-T2 signal."""
    clean = render_intensity(model, stack, table)
    for i in range(len(clean)):
        shading = coil_sensitivity(model, stack, i, coil_depth_mm)
        shading *= texture_field(rng, stack.rows, stack.cols, stack.pixel_spacing)
        clean[i] = gaussian_filter(clean[i], PSF_SIGMA_PX) * shading
    real = clean + noise * rng.standard_normal(clean.shape, dtype=np.float32)
    imaginary = noise * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def to_stored(image: np.ndarray, plan: SeriesPlan) -> np.ndarray:
    """Magnitude -> stored uint16 with ``value = stored * slope + intercept``."""
    value = image * plan.value_scale
    stored = np.rint((value - plan.rescale_intercept) / plan.rescale_slope)
    return np.clip(stored, 0, UINT16_MAX).astype(np.uint16)


def render_series(model: SpineModel, plan: SeriesPlan, rng: np.random.Generator) -> list[np.ndarray]:
    """Stored pixel arrays (uint16, one (n, rows, cols) per stack) of a planned series."""
    table = signal_table(plan.contrast, model.disc_degeneration, rng)
    coil_depth = rng.uniform(90.0, 160.0)
    return [to_stored(render_stack(model, stack, table, rng, plan.noise, coil_depth), plan) for stack in plan.stacks]
