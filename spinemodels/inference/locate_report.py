"""What ``spine locate`` leaves uncertain, in words: the summary at the end of ``spine locate`` and the
stage-1 warnings ``spine classify`` carries into its log (from the ``warning`` column of coords.csv)."""

from __future__ import annotations

import pandas as pd

MAX_STUDIES_LISTED = 10


def _warned(coords: pd.DataFrame) -> pd.Series:
    if "warning" not in coords.columns:
        return pd.Series(False, index=coords.index)
    return coords["warning"].fillna("").astype(str).str.strip() != ""


def locate_summary(coords: pd.DataFrame, study_ids: list[str]) -> list[str]:
    """Lines summing up a ``locate`` result: studies without points, studies and points with warnings (the
    studies listed with their count of warned points and lowest confidence)."""
    ids = [str(s) for s in study_ids]
    located = set(coords["study_id"].astype(str))
    missing = [s for s in ids if s not in located]
    warned = coords[_warned(coords)]
    by_study = warned.groupby(warned["study_id"].astype(str))
    lines = [f"summary: {len(located)} of {len(ids)} studies located; {len(missing)} without points"
             + (f" ({', '.join(missing[:MAX_STUDIES_LISTED])})" if missing else ""),
             f"summary: {len(warned)} of {len(coords)} points carry a warning, in {by_study.ngroups} studies"]
    for study_id, rows in list(by_study)[:MAX_STUDIES_LISTED]:
        lines.append(f"  study {study_id}: {len(rows)} points with a warning, lowest confidence "
                     f"{rows['confidence'].min():.3f}: {rows['warning'].iloc[0]}")
    if by_study.ngroups > MAX_STUDIES_LISTED:
        lines.append(f"  ... and {by_study.ngroups - MAX_STUDIES_LISTED} more studies (see the warning column)")
    return lines


def coords_warnings(coords: pd.DataFrame, study_ids: list[str] | None = None) -> list[str]:
    """One line per study whose coords rows carry a stage-1 warning (``study_ids``: only these)."""
    warned = coords[_warned(coords)]
    if study_ids is not None:
        warned = warned[warned["study_id"].astype(str).isin({str(s) for s in study_ids})]
    return [f"study {study_id}: {len(rows)} of its points carry a stage-1 warning, graded anyway "
            f"(e.g. {rows['condition'].iloc[0]} {rows['level'].iloc[0]}: {rows['warning'].iloc[0]})"
            for study_id, rows in warned.groupby(warned["study_id"].astype(str))]
