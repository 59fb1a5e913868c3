"""Severities of the 25 targets and the anatomical change each grade makes.

Severities are drawn from a latent degeneration score per study and per disc level, so that grades at one
level are correlated across conditions (as in real spines) while each target keeps its class prior. Each
grade then sets the size of the structure a radiologist looks at, from distributions that overlap between
neighbouring grades (learnable, not trivial).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from spinedata.conditions import GROUP_OF
from spinedata.constants import CONDITIONS, LEVELS, SEVERITIES
from spinedata.errors import OptionError

SPINAL, LEFT_FORAMINAL, RIGHT_FORAMINAL, LEFT_SUBARTICULAR, RIGHT_SUBARTICULAR = CONDITIONS

# Class priors (Normal/Mild, Moderate, Severe) per condition group and level, close to the frequencies of
# the competition's train.csv (most targets Normal/Mild, disease concentrated at L4/L5 and L5/S1).
REAL_PRIORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "spinal": ((0.94, 0.03, 0.03), (0.87, 0.08, 0.05), (0.80, 0.12, 0.08), (0.75, 0.12, 0.13), (0.94, 0.04, 0.02)),
    "foraminal": ((0.94, 0.05, 0.01), (0.87, 0.11, 0.02), (0.75, 0.21, 0.04), (0.58, 0.33, 0.09), (0.56, 0.31, 0.13)),
    "subarticular": ((0.88, 0.09, 0.03), (0.78, 0.15, 0.07), (0.65, 0.22, 0.13), (0.45, 0.32, 0.23), (0.70, 0.20, 0.10)),
}
BALANCED_PRIORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    group: ((1 / 3, 1 / 3, 1 / 3),) * len(LEVELS) for group in REAL_PRIORS
}
CLASS_BALANCES: tuple[str, ...] = ("real", "balanced")

STUDY_WEIGHT = 0.45
LEVEL_WEIGHT = 0.6
# the rest of the latent variance is noise per target, so that the marginal stays standard normal
TARGET_WEIGHT = float(np.sqrt(1.0 - STUDY_WEIGHT**2 - LEVEL_WEIGHT**2))

# Anatomy per grade (Normal/Mild, Moderate, Severe): (mean, sd, low, high), overlapping between grades.
SAC_AP_MM = ((13.5, 1.7, 10.0, 18.0), (9.8, 1.2, 7.0, 12.5), (6.2, 1.1, 3.5, 8.5))
"""Antero-posterior diameter of the dural sac at the disc, mm."""
FORAMEN_SCALE = ((1.0, 0.12, 0.75, 1.3), (0.64, 0.09, 0.45, 0.85), (0.36, 0.07, 0.2, 0.52))
"""Size of the foraminal fat relative to a healthy foramen (1 = about 19 x 9 mm)."""
RECESS_DEPTH_MM = ((6.5, 1.0, 4.5, 9.0), (4.0, 0.7, 2.6, 5.5), (2.2, 0.45, 1.2, 3.3))
"""Depth of the lateral recess (subarticular zone) at the disc, mm."""


def condition_group(condition: str) -> str:
    """``'Left Neural Foraminal Narrowing'`` -> ``'foraminal'``."""
    if condition in GROUP_OF:
        return GROUP_OF[condition]
    raise OptionError(f"unknown condition {condition!r}; expected one of {CONDITIONS}")


def priors_for(class_balance: str) -> dict[str, tuple[tuple[float, float, float], ...]]:
    """The class priors of a named balance: ``'real'`` (default) or ``'balanced'`` (a third each)."""
    if class_balance == "real":
        return REAL_PRIORS
    if class_balance == "balanced":
        return BALANCED_PRIORS
    raise OptionError(f"class balance {class_balance!r} is unknown; use one of {CLASS_BALANCES}")


@dataclass(frozen=True)
class Severities:
    """Severity codes (0, 1, 2) of one study: ``codes[condition index, level index]``, plus the latent
    degeneration per level (standard normal; higher = more degenerated), used for disc signal."""

    codes: np.ndarray  # (5 conditions, 5 levels) int
    level_degeneration: np.ndarray  # (5 levels,) float

    def of(self, condition: str, level: str) -> int:
        return int(self.codes[CONDITIONS.index(condition), LEVELS.index(level)])

    def name(self, condition: str, level: str) -> str:
        return SEVERITIES[self.of(condition, level)]


def sample_severities(rng: np.random.Generator, class_balance: str = "real") -> Severities:
    """Draw the 25 severities of one study from correlated latent scores thresholded at the priors."""
    priors = priors_for(class_balance)
    study = rng.standard_normal()
    levels = rng.standard_normal(len(LEVELS))
    codes = np.zeros((len(CONDITIONS), len(LEVELS)), np.int64)
    for ci, condition in enumerate(CONDITIONS):
        group = condition_group(condition)
        for li in range(len(LEVELS)):
            latent = STUDY_WEIGHT * study + LEVEL_WEIGHT * levels[li] + TARGET_WEIGHT * rng.standard_normal()
            p_normal, p_moderate, _ = priors[group][li]
            low, high = norm.ppf(p_normal), norm.ppf(p_normal + p_moderate)
            codes[ci, li] = 0 if latent < low else (1 if latent < high else 2)
    degeneration = STUDY_WEIGHT * study + LEVEL_WEIGHT * levels
    return Severities(codes=codes, level_degeneration=degeneration)


def draw_grade_value(rng: np.random.Generator, table: tuple[tuple[float, float, float, float], ...], code: int) -> float:
    """One value from the grade's (mean, sd, low, high) distribution."""
    mean, sd, low, high = table[code]
    return float(np.clip(rng.normal(mean, sd), low, high))
