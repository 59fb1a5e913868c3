"""Fold split by study: stratified, balanced, deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinedata.constants import TARGETS
from spinemodels.errors import ConfigError
from spinemodels.folds import assign_folds, worst_severity


def _strata(n=103, seed=0):
    rng = np.random.default_rng(seed)
    return pd.Series(rng.choice(3, n, p=[0.5, 0.3, 0.2]), index=[str(1000 + i) for i in range(n)])


def test_folds_are_stratified_balanced_and_cover_every_study_once():
    strata = _strata()
    folds = assign_folds(strata, 5, seed=1)
    assert sorted(folds["study_id"]) == sorted(strata.index) and folds["study_id"].is_unique
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    for _, group in folds.groupby("stratum"):
        per_fold = group["fold"].value_counts().reindex(range(5), fill_value=0)
        assert per_fold.max() - per_fold.min() <= 1


def test_folds_are_deterministic_and_depend_on_the_seed():
    strata = _strata()
    a = assign_folds(strata, 5, seed=7)
    b = assign_folds(strata.sample(frac=1.0, random_state=3), 5, seed=7)  # input order does not matter
    pd.testing.assert_frame_equal(a, b)
    assert not a["fold"].equals(assign_folds(strata, 5, seed=8)["fold"])


def test_too_few_studies_is_a_clear_error():
    with pytest.raises(ConfigError, match="3 studies cannot fill 5 folds"):
        assign_folds(_strata(3), 5, seed=0)


def test_worst_severity_ignores_missing_and_marks_studies_without_targets():
    targets = pd.DataFrame([{"study_id": 1, **dict.fromkeys(TARGETS, 0)}, {"study_id": 2, **dict.fromkeys(TARGETS, -1)}])
    targets.loc[0, TARGETS[7]] = 2
    worst = worst_severity(targets, ["1", "2", "3"])
    assert worst.to_dict() == {"1": 2, "2": -1, "3": -1}
