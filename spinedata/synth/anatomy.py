"""The 3D anatomy of one synthetic lumbar spine: an implicit model in patient space (LPS mm).

The spine is built in a *body frame* (x left, y posterior, z head, like LPS) around a centre line through
the vertebral bodies that lies in the plane ``x = 0`` and bends with lordosis (curvature concentrated
around the discs). Every structure is described in *straightened* coordinates ``(x, s, t)``: ``s`` the arc
length along the centre line (mm, 0 at the middle of L3, increasing toward the head), ``t`` the distance
behind it (mm, posterior positive) and ``x`` the distance to the left. The study's pose (a small rotation and
shift) carries the body frame into patient space: ``world = rotation @ body + shift``.

``spinedata.synth.painting.labels_at(model, points)`` classifies any array of patient-space points into
tissue labels (``spinedata.synth.tissues``); ``SpineModel.truth_points()`` gives the exact 3D point of every
condition and level, computed from the same functions, so labels and images agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from spinedata.constants import CONDITIONS, LEVELS
from spinedata.synth.disease import (
    FORAMEN_SCALE,
    LEFT_FORAMINAL,
    LEFT_SUBARTICULAR,
    RECESS_DEPTH_MM,
    RIGHT_FORAMINAL,
    RIGHT_SUBARTICULAR,
    SAC_AP_MM,
    SPINAL,
    Severities,
    draw_grade_value,
)

VERTEBRAE: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3", "S4")
DISCS: tuple[str, ...] = tuple(f"{a}/{b}" for a, b in zip(VERTEBRAE[:-1], VERTEBRAE[1:], strict=True))
"""Disc ``j`` lies between vertebra ``j`` and ``j + 1``; from ``S1/S2`` on they are fused (no disc)."""
LEVEL_DISC: dict[str, int] = {level: DISCS.index(level) for level in LEVELS}
FIRST_FUSED_DISC = DISCS.index("S1/S2")
L3 = VERTEBRAE.index("L3")
S1 = VERTEBRAE.index("S1")
S2 = VERTEBRAE.index("S2")
L1 = VERTEBRAE.index("L1")

# typical adult sizes (mm), scaled per study and varied per vertebra (shared/reference/anatomy.md)
BODY_HEIGHT = np.array([22, 23, 24, 26, 27, 28, 28, 27, 27, 20, 16, 13], float)
BODY_HALF_DEPTH = np.array([14, 14.5, 15, 15, 15.5, 16, 16.5, 16.5, 16, 13, 10, 8], float)
BODY_HALF_WIDTH = np.array([18, 19, 20, 21, 22, 23, 24, 25, 24, 20, 16, 12], float)
DISC_HEIGHT = np.array([6, 6.5, 7, 8, 9, 10, 11, 10, 1.5, 1.5, 1.5], float)
# share of the lumbar lordosis taken by each disc (deepest at L4-S1); thoracic and sacral bends in degrees
LORDOSIS_SHARE = {"L1/L2": 0.08, "L2/L3": 0.12, "L3/L4": 0.18, "L4/L5": 0.27, "L5/S1": 0.35}
FIXED_BEND_DEG = {"T10/T11": -4.0, "T11/T12": -3.0, "T12/L1": -1.0, "S1/S2": -12.0, "S2/S3": -10.0, "S3/S4": -8.0}
BEND_SIGMA_MM = 11.0
"""Curvature is spread around each disc with this standard deviation (keeps the bend radius > 80 mm)."""

DS = 0.25
"""Sampling step (mm) of the centre line and of the profiles along it."""
CURVE_EXTENSION_MM = 160.0
GRID_STEP_MM = 2.0
"""Step of the lookup grid that straightens points in the sagittal plane (bilinear error < 0.01 mm)."""
KD_STRIDE = 4
"""Centre-line samples (every ``KD_STRIDE``-th) searched for the nearest one before refinement."""
GRID_HALF_Y_MM = 220.0
GRID_HALF_Z_MM = 280.0
"""The lookup grid covers |y| <= 220 mm, |z| <= 280 mm of the body frame (every planned field of view)."""
OUTSIDE_T = 300.0
"""Straightened distances are clamped to +-300 mm (points off the lookup grid get +300)."""

# canal, foramen and recess geometry (mm)
ANTERIOR_EPIDURAL_MM = 1.0
BULGE_SHARE = 0.55
"""Share of a disc level's canal narrowing that comes from the front (disc bulge); the rest is ligamentum
flavum and facet thickening from behind."""
FLAVUM_SIGMA_MM = 5.0
FORAMEN_LATERAL_MM = 16.0
"""Lateral extent of a foramen beyond the canal's side wall."""
SIDES = (1.0, -1.0)
"""Side 0 is the patient's left (+x in LPS), side 1 the right."""


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (degrees) -> (3, 3)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class DiscFrame:
    """A disc's centre and axes in patient space (LPS mm, unit vectors)."""

    centre: np.ndarray  # (3,) middle of the disc on the centre line
    normal: np.ndarray  # (3,) toward the head, perpendicular to the disc
    posterior: np.ndarray  # (3,)
    left: np.ndarray  # (3,)
    height: float  # mm


class SpineModel:
    """One study's anatomy. Build it with ``sample_spine``; all arrays are read-only by convention."""

    # -- construction -------------------------------------------------------------------------------
    def __init__(self, rng: np.random.Generator, severities: Severities, max_rotation_deg: float = 8.0):
        self.severities = severities
        n_vert = len(VERTEBRAE)
        size = rng.normal(1.0, 0.06)
        self.height = BODY_HEIGHT * size * rng.normal(1.0, 0.04, n_vert)
        self.half_depth = BODY_HALF_DEPTH * rng.normal(1.0, 0.07) * rng.normal(1.0, 0.03, n_vert)
        self.half_width = BODY_HALF_WIDTH * rng.normal(1.0, 0.07) * rng.normal(1.0, 0.03, n_vert)
        degeneration = np.zeros(len(DISCS))
        for li, level in enumerate(LEVELS):
            degeneration[LEVEL_DISC[level]] = severities.level_degeneration[li]
        self.disc_degeneration = 1.0 / (1.0 + np.exp(-1.6 * (degeneration - 0.6)))  # 0..1
        self.disc_height = DISC_HEIGHT * size * rng.normal(1.0, 0.08, len(DISCS))
        self.disc_height *= 1.0 - 0.3 * self.disc_degeneration * (np.arange(len(DISCS)) < FIRST_FUSED_DISC)

        # positions along the centre line, top (T10) down, then 0 at the middle of L3
        mids, disc_mids, s = [], [], 0.0
        for k in range(n_vert):
            mids.append(s - self.height[k] / 2)
            s -= self.height[k]
            if k < len(DISCS):
                disc_mids.append(s - self.disc_height[k] / 2)
                s -= self.disc_height[k]
        self.mid = np.array(mids) - mids[L3]
        self.disc_mid = np.array(disc_mids) - mids[L3]

        self.lordosis_deg = rng.uniform(40.0, 60.0)
        self.sacral_slope_deg = rng.uniform(33.0, 45.0)
        self._build_centre_line()
        self._sample_canal(rng)
        self._sample_soft_tissue(rng)
        self._sample_pose(rng, max_rotation_deg)
        self._build_profiles()
        self.grid_origin: np.ndarray | None = None  # the straightening grid is built on first use

    def _build_centre_line(self) -> None:
        s_lo = self.mid[-1] - self.height[-1] / 2 - CURVE_EXTENSION_MM
        s_hi = self.mid[0] + self.height[0] / 2 + CURVE_EXTENSION_MM
        self.s0 = s_lo
        self.s = s_lo + DS * np.arange(int(np.ceil((s_hi - s_lo) / DS)) + 1)
        curvature = np.zeros_like(self.s)
        for j, disc in enumerate(DISCS):
            bend = self.lordosis_deg * LORDOSIS_SHARE[disc] if disc in LORDOSIS_SHARE else FIXED_BEND_DEG[disc]
            curvature += np.deg2rad(bend) * np.exp(-0.5 * ((self.s - self.disc_mid[j]) / BEND_SIGMA_MM) ** 2)
        curvature /= BEND_SIGMA_MM * np.sqrt(2 * np.pi)
        theta = np.cumsum(curvature) * DS
        theta += -np.deg2rad(self.sacral_slope_deg) - np.interp(self.mid[S1], self.s, theta)
        up = np.stack([np.zeros_like(theta), np.sin(theta), np.cos(theta)], axis=1)
        curve = np.cumsum(up, axis=0) * DS
        curve -= np.array([np.interp(0.0, self.s, curve[:, i]) for i in range(3)])
        self.curve = curve  # (N, 3) body frame
        tangent = np.gradient(curve, DS, axis=0)
        self.e_up = tangent / np.linalg.norm(tangent, axis=1, keepdims=True)
        self.e_post = np.stack([np.zeros_like(theta), self.e_up[:, 2], -self.e_up[:, 1]], axis=1)

    def _sample_canal(self, rng: np.random.Generator) -> None:
        """Canal, dural sac, foramina and recesses, with each level's grades turned into sizes."""
        sev = self.severities
        self.canal_ap = rng.normal(20.0, 1.4)  # osseous: posterior body wall to the laminae
        self.dorsal_fat = rng.normal(2.5, 0.4)
        self.flavum = rng.normal(2.6, 0.4)
        self.sac_half_width = rng.normal(9.0, 0.7)
        self.canal_half_width = self.sac_half_width + rng.normal(2.6, 0.3)
        self.sac_ap_baseline = self.canal_ap - ANTERIOR_EPIDURAL_MM - self.dorsal_fat - self.flavum
        n_discs = len(DISCS)
        self.sac_ap = np.full(n_discs, self.sac_ap_baseline)
        self.foramen_scale = np.ones((n_discs, 2))
        self.recess_depth = np.full((n_discs, 2), 6.5)
        for level in LEVELS:
            j = LEVEL_DISC[level]
            self.sac_ap[j] = min(self.sac_ap_baseline, draw_grade_value(rng, SAC_AP_MM, sev.of(SPINAL, level)))
            for side, (foraminal, subarticular) in enumerate(
                ((LEFT_FORAMINAL, LEFT_SUBARTICULAR), (RIGHT_FORAMINAL, RIGHT_SUBARTICULAR))
            ):
                self.foramen_scale[j, side] = draw_grade_value(rng, FORAMEN_SCALE, sev.of(foraminal, level))
                self.recess_depth[j, side] = draw_grade_value(rng, RECESS_DEPTH_MM, sev.of(subarticular, level))
        narrowing = self.sac_ap_baseline - self.sac_ap
        self.bulge = BULGE_SHARE * narrowing
        self.flavum_extra = (1.0 - BULGE_SHARE) * narrowing
        self.foramen_half_height = rng.normal(9.5, 0.7)
        self.foramen_half_ap = rng.normal(4.6, 0.35)
        self.foramen_s = self.disc_mid + self.disc_height / 2 + 0.15 * self.height[:-1]

    def _sample_soft_tissue(self, rng: np.random.Generator) -> None:
        """Trunk outline and subcutaneous fat (mm, in straightened x and t), endplates, paraspinal muscles."""
        self.skin_t = self.half_depth[L3] + self.canal_ap + rng.uniform(55.0, 85.0)
        self.outline_half_x = rng.uniform(140.0, 175.0)
        self.outline_half_t = rng.uniform(100.0, 125.0)
        self.fat_thickness = rng.uniform(8.0, 35.0)
        self.endplate_concavity = rng.uniform(1.0, 2.5)
        self.paraspinal_x = rng.uniform(30.0, 38.0)
        self.paraspinal_half_x = rng.uniform(24.0, 30.0)
        self.paraspinal_half_t = rng.uniform(22.0, 30.0)

    def _sample_pose(self, rng: np.random.Generator, max_rotation_deg: float) -> None:
        angles = rng.uniform(-1.0, 1.0, 3) * max_rotation_deg * np.array([1.0, 0.6, 0.75])
        self.rotation_deg = angles
        self.rotation = rotation_matrix(angles)
        self.shift = rng.uniform(-1.0, 1.0, 3) * np.array([10.0, 15.0, 25.0])

    def _build_profiles(self) -> None:
        """Tables over ``s`` (one value per centre-line sample) read by every point."""
        s = self.s
        vert = np.argmin(np.abs(s[:, None] - self.mid[None, :]), axis=1)
        disc = np.argmin(np.abs(s[:, None] - self.disc_mid[None, :]), axis=1)
        in_disc = np.abs(s - self.disc_mid[disc]) <= self.disc_height[disc] / 2
        in_body = np.abs(s - self.mid[vert]) <= self.height[vert] / 2
        kind = np.where(in_disc, 1, np.where(in_body, 0, 2))
        edge = np.where(in_disc, self.disc_height[disc] / 2 - np.abs(s - self.disc_mid[disc]),
                        self.height[vert] / 2 - np.abs(s - self.mid[vert]))
        half_depth = np.interp(s, self.mid[::-1], self.half_depth[::-1])
        half_width = np.interp(s, self.mid[::-1], self.half_width[::-1])
        bulge = np.zeros_like(s)
        flavum = np.full_like(s, self.flavum)
        for j in range(len(DISCS)):
            sigma = 0.35 * self.disc_height[j] + 1.5
            bulge += self.bulge[j] * np.exp(-0.5 * ((s - self.disc_mid[j]) / sigma) ** 2)
            flavum += self.flavum_extra[j] * np.exp(-0.5 * ((s - self.disc_mid[j]) / FLAVUM_SIGMA_MM) ** 2)
        canal_back = half_depth + self.canal_ap
        sac_front = half_depth + bulge + ANTERIOR_EPIDURAL_MM
        sac_back = canal_back - flavum - self.dorsal_fat
        narrowing = np.clip((self.sac_ap_baseline - (sac_back - sac_front)) / self.sac_ap_baseline, 0, 1)
        sac_half_width = self.sac_half_width * (1.0 - 0.25 * narrowing)
        foramen, recess = self.foramen_scale[disc], self.recess_depth[disc]
        rows = {
            "half_depth": half_depth, "half_width": half_width, "kind": kind, "edge": edge, "disc": disc,
            "bulge": bulge, "sac_front": sac_front, "sac_back": sac_back, "sac_half_width": sac_half_width,
            "canal_back": canal_back, "flavum": flavum, "vert_mid": self.mid[vert], "vert_height": self.height[vert],
            "disc_mid": self.disc_mid[disc], "disc_height": self.disc_height[disc],
            "foramen_s": self.foramen_s[disc], "foramen_left": foramen[:, 0], "foramen_right": foramen[:, 1],
            "recess_left": recess[:, 0], "recess_right": recess[:, 1], "arch": (vert <= S1).astype(float),
            "sac": (s > self.mid[S2]).astype(float), "cord": (s > self.mid[L1]).astype(float),
        }
        self.profile_names = tuple(rows)
        self.profiles = np.stack(list(rows.values())).astype(np.float32)
        self.limits = {name: (float(v.min()), float(v.max())) for name, v in rows.items()}

    def gather(self, names: tuple[str, ...], s: np.ndarray) -> list[np.ndarray]:
        """Profiles ``names`` at arc lengths ``s`` (nearest sample), one float32 array each."""
        i = np.clip(((s - self.s0) * (1.0 / DS) + 0.5).astype(np.intp), 0, len(self.s) - 1)
        rows = [self.profile_names.index(n) for n in names]
        return list(np.take(self.profiles[rows], i, axis=1))

    def profile(self, name: str, s: np.ndarray | float) -> np.ndarray:
        """A profile's value at arc lengths ``s`` (linear interpolation; for reports and truth points)."""
        return np.interp(s, self.s, self.profiles[self.profile_names.index(name)])

    def _build_straightening_grid(self) -> None:
        """(y, z) body-frame grid -> (s, t): nearest centre-line sample, refined along the tangent."""
        z_lo = max(self.curve[:, 2].min(), -GRID_HALF_Z_MM)
        z_hi = min(self.curve[:, 2].max(), GRID_HALF_Z_MM)
        self.grid_origin = np.array([-GRID_HALF_Y_MM, z_lo])
        ny = int(2 * GRID_HALF_Y_MM / GRID_STEP_MM) + 1
        nz = int((z_hi - z_lo) / GRID_STEP_MM) + 1
        gy, gz = np.meshgrid(self.grid_origin[0] + GRID_STEP_MM * np.arange(ny),
                             self.grid_origin[1] + GRID_STEP_MM * np.arange(nz), indexing="ij")
        points = np.stack([gy.ravel(), gz.ravel()], axis=1)
        _, nearest = cKDTree(self.curve[::KD_STRIDE, 1:]).query(points)
        nearest *= KD_STRIDE
        offset = points - self.curve[nearest, 1:]
        s = self.s[nearest] + np.einsum("ij,ij->i", offset, self.e_up[nearest, 1:])
        t = np.einsum("ij,ij->i", offset, self.e_post[nearest, 1:])
        self.grid_s = s.reshape(ny, nz).astype(np.float32)
        self.grid_t = t.reshape(ny, nz).astype(np.float32)

    # -- coordinates --------------------------------------------------------------------------------
    def to_body(self, points: np.ndarray) -> np.ndarray:
        """Patient space (..., 3) -> body frame (..., 3)."""
        return np.einsum("...j,jk->...k", np.asarray(points, float) - self.shift, self.rotation)

    def to_world(self, body: np.ndarray) -> np.ndarray:
        """Body frame (..., 3) -> patient space (..., 3)."""
        return np.einsum("...j,kj->...k", np.asarray(body, float), self.rotation) + self.shift

    def straighten(self, body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body frame (n, 3) -> (x, s, t), each (n,) float32; points off the lookup grid get ``t = 300``."""
        if self.grid_origin is None:
            self._build_straightening_grid()
        gy = (body[:, 1] - self.grid_origin[0]) / GRID_STEP_MM
        gz = (body[:, 2] - self.grid_origin[1]) / GRID_STEP_MM
        coords = np.stack([gy, gz])
        s = map_coordinates(self.grid_s, coords, order=1, mode="nearest", prefilter=False)
        t = map_coordinates(self.grid_t, coords, order=1, mode="nearest", prefilter=False)
        ny, nz = self.grid_s.shape
        off = (gy < 0) | (gy > ny - 1) | (gz < 0) | (gz > nz - 1)
        t[off] = OUTSIDE_T
        np.clip(t, -OUTSIDE_T, OUTSIDE_T, out=t)
        return body[:, 0].astype(np.float32), s, t

    def unstraighten(self, x: float, s: float, t: float) -> np.ndarray:
        """Straightened ``(x, s, t)`` -> patient space (3,)."""
        centre = np.array([np.interp(s, self.s, self.curve[:, i]) for i in range(3)])
        post = np.array([np.interp(s, self.s, self.e_post[:, i]) for i in range(3)])
        post /= np.linalg.norm(post)
        return self.to_world(centre + t * post + np.array([x, 0.0, 0.0]))

    def disc_frame(self, disc: int) -> DiscFrame:
        """Centre and axes of disc ``disc`` (index into ``DISCS``) in patient space."""
        s = self.disc_mid[disc]
        up = np.array([np.interp(s, self.s, self.e_up[:, i]) for i in range(3)])
        up /= np.linalg.norm(up)
        post = np.array([0.0, up[2], -up[1]])
        return DiscFrame(centre=self.unstraighten(0.0, s, 0.0), normal=self.rotation @ up,
                         posterior=self.rotation @ post, left=self.rotation @ np.array([1.0, 0.0, 0.0]),
                         height=float(self.disc_height[disc]))

    # -- the points a radiologist labels ------------------------------------------------------------
    def truth_points(self, discs: dict[str, int] | None = None) -> dict[tuple[str, str], np.ndarray]:
        """The exact labelled point (patient space, (3,)) of every condition and level.

        ``discs`` maps each level name to the disc it is placed at (default: its own); pass a shifted map
        to get the points a mislabelled study would carry.
        """
        discs = discs or LEVEL_DISC
        points: dict[tuple[str, str], np.ndarray] = {}
        for level in LEVELS:
            j = discs[level]
            s = self.disc_mid[j]
            front, back = self.profile("sac_front", s), self.profile("sac_back", s)
            points[(SPINAL, level)] = self.unstraighten(0.0, s, 0.5 * (front + back))
            for side, sign in enumerate(SIDES):
                foraminal = (LEFT_FORAMINAL, RIGHT_FORAMINAL)[side]
                subarticular = (LEFT_SUBARTICULAR, RIGHT_SUBARTICULAR)[side]
                sf = self.foramen_s[j]
                tf = self.profile("half_depth", sf) + 0.3 + self.foramen_half_ap
                points[(foraminal, level)] = self.unstraighten(sign * self.foramen_x, sf, tf)
                depth = self.recess_depth[j, side]
                points[(subarticular, level)] = self.unstraighten(sign * self.recess_x(j), s, front + depth / 2)
        return {key: points[key] for key in ((c, lv) for c in CONDITIONS for lv in LEVELS)}

    @property
    def foramen_x(self) -> float:
        """Distance (mm) of a foramen's centre from the midline."""
        return self.canal_half_width - 1.0 + FORAMEN_LATERAL_MM / 2

    def recess_x(self, disc: int) -> float:
        """Distance (mm) of the lateral recess's centre from the midline at disc ``disc``."""
        return float(self.profile("sac_half_width", self.disc_mid[disc])) + 1.0

def sample_spine(rng: np.random.Generator, severities: Severities, max_rotation_deg: float = 8.0) -> SpineModel:
    """Draw one study's anatomy (sizes, curvature, canal, pose) with the given severities."""
    return SpineModel(rng, severities, max_rotation_deg)
