"""Which tissue is where: tissue labels of patient-space points for a ``SpineModel``.

Structures are painted block by block in straightened coordinates ``(x, s, t)`` (see ``anatomy``), each block
on the few points that can hold it; the order of the blocks is the order of precedence where they overlap.
``labels_on_plane`` is the fast path used for rendering (body coordinates are affine on a plane; ``(s, t)``
are computed every ``PLANE_STEP_PX`` pixels and interpolated with cubic weights).
"""

from __future__ import annotations

import numpy as np

from spinedata.synth import tissues as tis
from spinedata.synth.anatomy import (
    FIRST_FUSED_DISC,
    FORAMEN_LATERAL_MM,
    L1,
    L3,
    OUTSIDE_T,
    S1,
    VERTEBRAE,
    SpineModel,
)
from spinedata.synth.interpolation import cubic_taps, cubic_upsample

PLANE_STEP_PX = 8
"""Pixels between the points of a plane whose straightened coordinates are computed exactly."""
RECESS_HALF_WIDTH_MM = 3.2
ROOT_RADIUS_MM = 2.3
CAUDA_RADIUS_MM = 1.1
# cauda equina roots at these (x, t) fractions of the dural sac's half axes: dorsal, as in a supine patient
CAUDA_ROOTS = ((-0.55, 0.30), (-0.28, 0.55), (0.0, 0.62), (0.28, 0.55), (0.55, 0.30), (-0.12, 0.36), (0.12, 0.36))


def labels_at(model: SpineModel, points: np.ndarray) -> np.ndarray:
    """Tissue label (uint8, ``spinedata.synth.tissues``) of every patient-space point (..., 3)."""
    shape = points.shape[:-1]
    body = model.to_body(points.reshape(-1, 3))
    x, s, t = model.straighten(body)
    return _classify(model, x, body[:, 1].astype(np.float32), s, t).reshape(shape)


def labels_on_plane(model: SpineModel, origin: np.ndarray, row_step: np.ndarray, col_step: np.ndarray, rows: int,
                    cols: int) -> np.ndarray:
    """Tissue labels (rows, cols) at ``origin + r * row_step + c * col_step`` (patient space, mm).

    The same labels as ``labels_at``, faster: body coordinates are affine on a plane, and the smooth
    straightened coordinates ``(s, t)`` are computed on a grid every ``PLANE_STEP_PX`` pixels and
    interpolated with cubic Lagrange weights.
    """
    b0 = model.to_body(origin)
    br, bc = np.asarray(row_step, float) @ model.rotation, np.asarray(col_step, float) @ model.rotation
    r = np.arange(rows, dtype=np.float64)[:, None]
    c = np.arange(cols, dtype=np.float64)[None, :]
    x = (b0[0] + r * br[0] + c * bc[0]).astype(np.float32)
    y = (b0[1] + r * br[1] + c * bc[1]).astype(np.float32)
    nodes_r, *taps_r = cubic_taps(rows, PLANE_STEP_PX)
    nodes_c, *taps_c = cubic_taps(cols, PLANE_STEP_PX)
    coarse = b0 + nodes_r[:, None, None] * br + nodes_c[None, :, None] * bc
    _, s_coarse, t_coarse = model.straighten(coarse.reshape(-1, 3))
    shape = (len(nodes_r), len(nodes_c))
    s = cubic_upsample(s_coarse.reshape(shape), taps_r, taps_c)
    t = cubic_upsample(t_coarse.reshape(shape), taps_r, taps_c)
    return _classify(model, x.ravel(), y.ravel(), s.ravel(), t.ravel()).reshape(rows, cols)


def _classify(model: SpineModel, x: np.ndarray, y: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Labels of flat float32 arrays of straightened coordinates (and body ``y`` for the outline).

    Structures are painted block by block, each block on the few points that can hold it (the bounds
    below are conservative boxes, in mm, around each painter's structures); the order of the blocks is the
    order of precedence where they overlap.
    """
    labels = _outline(model, x, y, t)
    hd_lo, hd_hi = model.limits["half_depth"]
    back_hi = model.limits["canal_back"][1]
    cw = model.canal_half_width
    ax = np.abs(x)
    spine = (s > model.mid[-1] - model.height[-1] / 2) & (s < model.mid[0] + model.height[0] / 2)
    spine &= labels != tis.AIR
    back = model.half_depth[L3] + model.canal_ap - 5.0
    soft = (labels == tis.MUSCLE) & (ax < 72.0) & (((t > -30.0) & (t < 16.0)) | (t > back))
    _paint(model, labels, np.flatnonzero(soft), _muscles, x, s, t)
    vessels = spine & (t < -hd_lo - 2.0) & (t > -hd_hi - 26.0) & (x > -32.0) & (x < 27.0)
    _paint(model, labels, np.flatnonzero(vessels), _vessels, x, s, t)
    lateral = spine & (ax > cw - 1.0) & (ax < cw + FORAMEN_LATERAL_MM) & (t > hd_lo - 3.0) & (t < back_hi + 10.0)
    _paint(model, labels, np.flatnonzero(lateral), _lateral, x, s, t)
    canal = np.flatnonzero(spine & (ax < cw + 4.0) & (t > hd_lo - 2.0) & (t < back_hi + 30.0))
    _paint(model, labels, canal, _canal_fat, x, s, t)
    column = spine & (ax < model.limits["half_width"][1]) & (np.abs(t) < hd_hi + model.limits["bulge"][1])
    _paint(model, labels, np.flatnonzero(column), _column, x, s, t)
    _paint(model, labels, canal, _posterior, x, s, t)
    return labels


def _paint(model: SpineModel, labels, index, painter, x, s, t) -> None:
    """Run ``painter`` on the points ``index`` only, writing their labels back."""
    if index.size:
        sub = labels[index]
        painter(model, x[index], s[index], t[index], sub)
        labels[index] = sub


def _outline(model: SpineModel, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Air, subcutaneous fat, muscle and viscera: an elliptic trunk whose back follows half the lordosis."""
    depth = 0.5 * (np.clip(t, -120.0, OUTSIDE_T) + y)
    tc = model.skin_t - model.outline_half_t
    ex, et = x / model.outline_half_x, (depth - tc) / model.outline_half_t
    outer = ex * ex + et * et <= 1.0
    ix = x / (model.outline_half_x - model.fat_thickness)
    it = (depth - tc) / (model.outline_half_t - model.fat_thickness)
    inner = ix * ix + it * it <= 1.0
    labels = np.where(outer, tis.FAT, tis.AIR).astype(np.uint8)
    labels[inner] = tis.MUSCLE
    labels[inner & (t < -45.0)] = tis.VISCERA
    return labels


def _muscles(model: SpineModel, x, s, t, labels) -> None:
    """Psoas beside the bodies (growing toward L5) and the paraspinal muscles, outlined by fat planes."""
    ax = np.abs(x)
    fat = np.zeros(x.shape, bool)
    # paraspinal mass behind the laminae: an ellipse per side with a fat plane between its two columns
    back = model.half_depth[L3] + model.canal_ap
    u, v = (ax - model.paraspinal_x) / model.paraspinal_half_x, (t - back - model.paraspinal_half_t) / model.paraspinal_half_t
    ring = u * u + v * v
    fat |= (ring > 1.0) & (ring < 1.045) & (ax > model.paraspinal_x + 0.3 * model.paraspinal_half_x)
    fat |= (ring < 1.0) & (np.abs(ax - 0.55 * model.paraspinal_x - 6.0) < 0.7) & (t > back + 8.0)
    # psoas: from L1 down, lateral to the bodies, a thin fat rim around it
    lumbar = (s < model.mid[L1]) & (s > model.mid[S1])
    radius = np.clip(4.0 + 0.14 * (model.mid[L1] - s), 4.0, 24.0)
    px = (ax - (model.half_width[L3] + 0.8 * radius + 3.0)) / radius
    pt = (t + 0.2 * model.half_depth[L3] * 2.0) / (0.8 * radius)
    psoas = px * px + pt * pt
    fat |= lumbar & (psoas > 1.0) & (psoas < 1.06)
    labels[fat] = tis.FAT


def _vessels(model: SpineModel, x, s, t, labels) -> None:
    """Aorta left of the midline (down to L4) and vena cava right of it (down to L5)."""
    (half_depth,) = model.gather(("half_depth",), s)
    tv = t + half_depth + 14.0
    labels[((x - 16.0) ** 2 + tv * tv < 100.0) & (s > model.mid[VERTEBRAE.index("L4")])] = tis.ARTERY
    labels[((x + 20.0) ** 2 + tv * tv < 121.0) & (s > model.mid[VERTEBRAE.index("L5")])] = tis.VEIN


def _lateral(model: SpineModel, x, s, t, labels) -> None:
    """Articular pillars, the soft tissue between the pedicles, foraminal fat and root, pedicles."""
    (half_depth, canal_back, disc_mid, vert_mid, vert_height, foramen_s, left, right, arch) = model.gather(
        ("half_depth", "canal_back", "disc_mid", "vert_mid", "vert_height", "foramen_s", "foramen_left",
         "foramen_right", "arch"), s)
    cw = model.canal_half_width
    ax = np.abs(x)
    lumbar = s > model.mid[S1]
    px, pt = (ax - (cw + 7.5)) / 8.5, (t - (canal_back + 2.0)) / 8.0
    pillar = lumbar & (px * px + pt * pt <= 1.0)
    labels[pillar] = tis.POST_MARROW
    joint = np.abs(s - (disc_mid + 2.0 + 0.3 * (t - canal_back))) < 0.9
    labels[pillar & joint] = tis.LIGAMENT
    zone_t = (t - 0.5 * (half_depth - 3.0 + canal_back - 6.0)) / (0.5 * (canal_back - half_depth - 3.0) + 1.5)
    zone_x = (ax - (cw + 7.5)) / 9.5
    zone = lumbar & (zone_x * zone_x + zone_t * zone_t <= 1.0)
    labels[zone] = tis.LIGAMENT
    scale = np.where(x >= 0, left, right)
    centre_t = half_depth + (0.3 + model.foramen_half_ap)
    u = (s - foramen_s) / (model.foramen_half_height * (0.35 + 0.65 * scale))
    v = (t - centre_t) / (model.foramen_half_ap * scale)
    labels[zone & (u * u + v * v <= 1.0)] = tis.FORAMEN_FAT
    root_s = s - (foramen_s + 0.4 * model.foramen_half_height)
    root_t = t - centre_t
    labels[zone & (root_s * root_s + root_t * root_t <= ROOT_RADIUS_MM**2)] = tis.ROOT
    ps = (s - (vert_mid + 0.2 * vert_height)) / (0.27 * vert_height)
    px = (ax - (cw + 4.5)) / 4.5
    t_lo, t_hi = half_depth - 3.0, canal_back - 4.0
    pt = (t - 0.5 * (t_lo + t_hi)) / (0.5 * (t_hi - t_lo))
    pedicle = ps * ps + px * px + pt * pt
    inside = (arch > 0.5) & (pedicle <= 1.0)
    labels[inside] = tis.POST_MARROW
    labels[inside & (pedicle > 0.7)] = tis.CORTEX


def _canal_fat(model: SpineModel, x, s, t, labels) -> None:
    half_depth, canal_back, arch = model.gather(("half_depth", "canal_back", "arch"), s)
    canal = (arch > 0.5) & (np.abs(x) <= model.canal_half_width) & (t >= half_depth - 2.0) & (t <= canal_back)
    labels[canal] = tis.EPIDURAL_FAT


def _column(model: SpineModel, x, s, t, labels) -> None:
    """Vertebral bodies and discs: rounded boxes in (x, t) with concave endplates; discs bulge backward;
    the nucleus fills the disc's middle and the endplate concavities."""
    half_depth, half_width, kind, edge, bulge, disc = model.gather(
        ("half_depth", "half_width", "kind", "edge", "bulge", "disc"), s)
    is_disc = kind == 1
    depth = half_depth + np.where(is_disc & (t > 0), bulge, 0.0)
    q = x / half_width
    q *= q
    q *= q
    r = t / depth
    r *= r
    r = q + r * r
    # endplates are concave: the disc dents each body by up to the concavity depth at the centre
    rx, rt = x / half_width, t / half_depth
    dent = model.endplate_concavity * np.clip(1.0 - (rx * rx + rt * rt), 0.0, 1.0)
    in_column = r <= 1.0
    dented = (kind == 0) & (edge <= dent)
    in_body = (kind == 0) & in_column & ~dented
    labels[in_body] = tis.MARROW
    labels[in_body & ((r > 0.72) | (edge - dent < 1.0))] = tis.CORTEX
    in_disc = (is_disc | dented) & in_column
    labels[in_disc] = tis.ANNULUS
    nx, nt = x / (0.62 * half_width), t / (0.55 * half_depth)
    disc_index = disc.astype(np.intp)
    inside = np.where(dented, dent - edge, edge + dent)  # distance to the (dented) endplate, mm
    nucleus = in_disc & (nx * nx + nt * nt <= 1.0) & (inside > 1.2)
    labels[nucleus] = (tis.NUCLEUS_BASE + disc_index[nucleus]).astype(np.uint8)
    labels[in_disc & (disc_index >= FIRST_FUSED_DISC)] = tis.CORTEX


def _posterior(model: SpineModel, x, s, t, labels) -> None:
    """Ligamentum flavum, laminae, spinous processes, facets, the dural sac and the lateral recesses."""
    (canal_back, flavum, vert_mid, vert_height, arch, disc_mid, disc_height, disc, sac_front, sac_back,
     sac_half_width, recess_left, recess_right, has_sac, has_cord) = model.gather(
        ("canal_back", "flavum", "vert_mid", "vert_height", "arch", "disc_mid", "disc_height", "disc",
         "sac_front", "sac_back", "sac_half_width", "recess_left", "recess_right", "sac", "cord"), s)
    cw = model.canal_half_width
    ax = np.abs(x)
    lumbar = s > model.mid[S1]
    back = t - canal_back
    labels[lumbar & (ax <= cw) & (t >= canal_back - flavum) & (back <= 6.0)] = tis.LIGAMENT
    arch = arch > 0.5
    lamina_s = s - vert_mid
    lamina = arch & (lamina_s > -0.5 * vert_height - 3.0) & (lamina_s < 0.2 * vert_height)
    labels[lamina & (back >= 0.0) & (back <= 7.0) & (ax <= cw + 4.0)] = tis.POST_MARROW
    midline = (ax <= 3.2) & (back > 5.0) & (back < 30.0)
    labels[lumbar & midline] = tis.LIGAMENT
    spinous_s = lamina_s + 0.3 * (back - 5.0)
    labels[arch & midline & (spinous_s > -0.45 * vert_height) & (spinous_s < 0.15 * vert_height)] = tis.POST_MARROW

    # facets over each lateral recess at the disc level
    recess_x = sac_half_width + 1.0
    depth = np.where(x >= 0, recess_left, recess_right)
    window = lumbar & (disc < FIRST_FUSED_DISC) & (np.abs(s - disc_mid) <= 0.5 * disc_height + 3.0)
    facet = window & (ax > recess_x - 2.5) & (ax < cw + 2.0) & (t > sac_front + depth) & (
        t < sac_front + depth + 9.0)
    labels[facet] = tis.POST_MARROW

    # dural sac: CSF with the cord above the conus and the cauda equina roots below it
    centre = 0.5 * (sac_front + sac_back)
    half_ap = np.maximum(0.5 * (sac_back - sac_front), 0.3)
    sx, st = x / sac_half_width, (t - centre) / half_ap
    in_sac = (has_sac > 0.5) & (sx * sx + st * st <= 1.0)
    labels[in_sac] = tis.CSF
    cx, ct = x / (0.45 * sac_half_width), (t - centre) / (0.55 * half_ap)
    labels[in_sac & (has_cord > 0.5) & (cx * cx + ct * ct <= 1.0)] = tis.CORD
    cauda = in_sac & (has_cord < 0.5)
    for fx, ft in CAUDA_ROOTS:
        dx, dt = x - fx * sac_half_width, t - (centre + ft * half_ap)
        labels[cauda & (dx * dx + dt * dt <= CAUDA_RADIUS_MM**2)] = tis.ROOT

    # lateral recesses: CSF lobes at the sac's sides, each holding the descending root
    centre_r = sac_front + 0.5 * depth
    rx, rt = (ax - recess_x) / RECESS_HALF_WIDTH_MM, (t - centre_r) / (0.5 * depth)
    recess = window & (rx * rx + rt * rt <= 1.0)
    labels[recess] = tis.CSF
    root_r = np.minimum(1.4, 0.45 * depth)
    labels[recess & ((ax - recess_x) ** 2 + (t - centre_r) ** 2 <= root_r * root_r)] = tis.ROOT
