"""Severity labels that disagree with out-of-fold grades (``spine audit --grades``), and leaving them out.

A label is suspicious when the out-of-fold expected grade of its level, ``P(moderate) + 2 P(severe)`` (0 to 2),
lies at least ``DISAGREEMENT`` from it: a grader that never trained on the study sees something else in the
images. ``train.csv`` is not changed; training can leave the listed labels out (``data.exclude_labels``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedata.constants import SEVERITIES, target_name
from spinemodels.errors import ConfigError

DISAGREEMENT = 1.3
"""Smallest |expected grade - label| (grades 0, 1, 2) that is reported: chosen on validation studies with injected
wrong grades (0.8 listed twice as many correct labels as wrong ones; docs/benchmarks.md)."""
GRADE_FINDING_COLUMNS = ["study_id", "condition", "level", "label", "expected_grade", "p_label", "disagreement",
                         "run"]
KEY = ["study_id", "condition", "level"]


def audit_grades(oof: pd.DataFrame, threshold: float = DISAGREEMENT) -> pd.DataFrame:
    """Rows of out-of-fold predictions (``study_id, condition, level, normal_mild, moderate, severe, target``,
    optionally ``run``) whose expected grade is at least ``threshold`` from the label, largest first."""
    known = oof[oof["target"] >= 0]
    expected = known["moderate"].to_numpy(float) + 2 * known["severe"].to_numpy(float)
    codes = known["target"].to_numpy(np.int64)
    p_label = known[["normal_mild", "moderate", "severe"]].to_numpy(float)[np.arange(len(known)), codes]
    table = known.assign(label=[SEVERITIES[c] for c in codes], expected_grade=expected, p_label=p_label,
                         disagreement=np.abs(expected - codes))
    if "run" not in table:
        table = table.assign(run="")
    found = table[table["disagreement"] >= threshold].sort_values("disagreement", ascending=False, kind="stable")
    return found[GRADE_FINDING_COLUMNS].reset_index(drop=True)


def read_exclusions(path: str | Path) -> set[tuple[str, str, str]]:
    """(study_id, condition, level) of a findings CSV (``spine audit --grade-findings``)."""
    try:
        table = pd.read_csv(path, dtype={"study_id": str})
    except (OSError, ValueError) as error:
        raise ConfigError(f"data.exclude_labels: cannot read {path} ({error})") from error
    missing = [c for c in KEY if c not in table.columns]
    if missing:
        raise ConfigError(f"data.exclude_labels: {path} lacks the columns {missing} (write it with spine audit)")
    return set(zip(table["study_id"].astype(str), table["condition"], table["level"], strict=True))


def exclude_targets(targets: pd.DataFrame, excluded: set[tuple[str, str, str]]) -> pd.DataFrame:
    """``dataset.targets`` with the excluded (study, condition, level) set to -1 (missing)."""
    out = targets.copy()
    index = {str(s): i for i, s in zip(out.index, out["study_id"].astype(str), strict=True)}
    for study_id, condition, level in excluded:
        column = target_name(condition, level)
        if study_id in index and column in out.columns:
            out.at[index[study_id], column] = -1
    return out
