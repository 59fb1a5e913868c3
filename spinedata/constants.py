"""Names of the competition: conditions, levels, targets, severities, series roles and row ids.

Everything here follows the RSNA 2024 Lumbar Spine competition exactly
(see ``shared/reference/competition.md``).
"""

from __future__ import annotations

CONDITIONS: tuple[str, ...] = (
    "Spinal Canal Stenosis",
    "Left Neural Foraminal Narrowing",
    "Right Neural Foraminal Narrowing",
    "Left Subarticular Stenosis",
    "Right Subarticular Stenosis",
)
"""The five conditions, as written in ``train_label_coordinates.csv``."""

LEVELS: tuple[str, ...] = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
"""The five disc levels, head to foot."""

SEVERITIES: tuple[str, ...] = ("Normal/Mild", "Moderate", "Severe")
"""Severity names; their index is the class (0, 1, 2). Missing is -1."""

SEVERITY_CODE: dict[str, int] = {name: i for i, name in enumerate(SEVERITIES)}
MISSING = -1

SEVERITY_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0)
"""Sample weight of each true class in the competition metric."""

SUBMISSION_COLUMNS: tuple[str, ...] = ("normal_mild", "moderate", "severe")

ROLE_SAG_T1 = "Sagittal T1"
ROLE_SAG_T2 = "Sagittal T2/STIR"
ROLE_AXIAL_T2 = "Axial T2"
ROLES: tuple[str, ...] = (ROLE_SAG_T1, ROLE_SAG_T2, ROLE_AXIAL_T2)
"""Series roles, as written in ``*_series_descriptions.csv`` (each condition's: ``spinedata.conditions``)."""


def condition_key(condition: str) -> str:
    """``'Left Neural Foraminal Narrowing'`` -> ``'left_neural_foraminal_narrowing'``."""
    return condition.lower().replace(" ", "_")


def level_key(level: str) -> str:
    """``'L4/L5'`` -> ``'l4_l5'``."""
    return level.lower().replace("/", "_")


def target_name(condition: str, level: str) -> str:
    """Column name in ``train.csv``, e.g. ``spinal_canal_stenosis_l4_l5``."""
    return f"{condition_key(condition)}_{level_key(level)}"


def row_id(study_id: str | int, condition: str, level: str) -> str:
    """Submission row id, e.g. ``4003253_left_neural_foraminal_narrowing_l4_l5``."""
    return f"{study_id}_{target_name(condition, level)}"


TARGETS: tuple[str, ...] = tuple(target_name(c, lv) for c in CONDITIONS for lv in LEVELS)
"""The 25 target columns of ``train.csv``, condition-major as in the competition."""

TARGET_INDEX: dict[str, tuple[str, str]] = {
    target_name(c, lv): (c, lv) for c in CONDITIONS for lv in LEVELS
}
"""Target column -> (condition, level)."""
