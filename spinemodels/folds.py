"""Folds by study, stratified on severity, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spinedata.constants import TARGETS
from spinemodels.errors import ConfigError

NO_TARGETS = -1
"""Stratum of a study without any known severity."""


def worst_severity(targets: pd.DataFrame, study_ids: list[str]) -> pd.Series:
    """Worst known severity (0/1/2, -1 when none) of each study over the 25 targets; index study_id (str)."""
    ids = [str(s) for s in study_ids]
    if targets is None or len(targets) == 0:
        return pd.Series(NO_TARGETS, index=ids, name="stratum", dtype=int)
    table = targets.assign(study_id=targets["study_id"].astype(str)).set_index("study_id")
    columns = [c for c in TARGETS if c in table.columns]
    worst = table[columns].max(axis=1) if columns else pd.Series(dtype=int)
    return worst.reindex(ids).fillna(NO_TARGETS).astype(int).rename("stratum")


def assign_folds(strata: pd.Series, n_folds: int, seed: int) -> pd.DataFrame:
    """Split studies into ``n_folds`` folds, stratified on ``strata`` (index: study_id).

    Within each stratum the studies are shuffled with ``seed`` and dealt round-robin, continuing where the
    previous stratum stopped, so folds differ in size by at most one. Returns columns study_id, fold,
    stratum, sorted by study_id.
    """
    if n_folds < 2:
        raise ConfigError(f"train.n_folds must be at least 2, got {n_folds}")
    if len(strata) < n_folds:
        raise ConfigError(
            f"{len(strata)} studies cannot fill {n_folds} folds; lower train.n_folds or add studies"
        )
    rng = np.random.default_rng(seed)
    ids = pd.Index([str(s) for s in strata.index])
    values = np.asarray(strata.to_numpy())
    order = np.argsort(ids.to_numpy(), kind="stable")  # independent of the input order
    fold = np.empty(len(ids), dtype=int)
    offset = 0
    for stratum in sorted(set(values.tolist())):
        members = order[values[order] == stratum]
        members = members[rng.permutation(len(members))]
        fold[members] = (np.arange(len(members)) + offset) % n_folds
        offset += len(members)
    out = pd.DataFrame({"study_id": ids, "fold": fold, "stratum": values})
    return out.sort_values("study_id", kind="stable").reset_index(drop=True)
