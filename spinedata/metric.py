"""The competition metric of RSNA 2024 Lumbar Spine, with its four parts, and a class-prior baseline.

The score is the mean of four sample-weighted log losses (lower is better):

- ``spinal_canal_stenosis``, ``neural_foraminal_narrowing``, ``subarticular_stenosis``: one group each
  (a row's group is the substring ``spinal`` / ``foraminal`` / ``subarticular`` of its row id), the
  three columns taken as class probabilities, each row weighted 1 / 2 / 4 by its true class;
- ``any_severe_spinal``: per study, label 1 when any scored spinal level is Severe, prediction the largest
  ``severe`` value among those spinal rows, weight the largest of their row weights; a weighted binary
  log loss.

Probabilities are treated exactly like ``sklearn.metrics.log_loss`` of scikit-learn 1.2-1.4, which the
Kaggle scorer called during the competition: clipped to ``[eps, 1 - eps]`` with ``eps`` the machine epsilon
of float64, then every row divided by its sum (so rows that do not sum to 1 are renormalised, as they were
on the leaderboard; newer scikit-learn warns instead). The any_severe_spinal prediction is the raw
``severe`` value (not renormalised), clipped the same way, as in the official code. Rows whose truth is
missing are not scored (and do not take part in any_severe_spinal).

Example:
    >>> import pandas as pd
    >>> from spinedata.constants import TARGETS
    >>> truth = pd.DataFrame([{"study_id": "1", **{t: "Normal/Mild" for t in TARGETS}}])
    >>> sub = priors_submission(truth, ["1"], pseudocount=0.0)
    >>> round(score(sub, truth)["score"], 6)
    0.0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from spinedata.conditions import CONDITION_GROUPS, SCORED_GROUPS
from spinedata.constants import (
    MISSING,
    SEVERITIES,
    SEVERITY_CODE,
    SEVERITY_WEIGHTS,
    SUBMISSION_COLUMNS,
    TARGETS,
)
from spinedata.errors import SpineError

PROBABILITY_EPS: float = float(np.finfo(np.float64).eps)
"""Probabilities are clipped to ``[PROBABILITY_EPS, 1 - PROBABILITY_EPS]`` (scikit-learn's ``eps='auto'``)."""

GROUPS: dict[str, str] = {name: CONDITION_GROUPS[name].metric_key for name in SCORED_GROUPS}
"""Row-id substring of each condition group -> its key in the result of :func:`score`."""

ANY_SEVERE_KEY = "any_severe_spinal"
SCORE_KEYS: tuple[str, ...] = ("score", *GROUPS.values(), ANY_SEVERE_KEY)
"""Keys of the dict returned by :func:`score`, in display order."""

ANY_SEVERE_SCALAR: float = 1.0
"""Weight of any_severe_spinal in the mean of the four parts (1 in the competition)."""

SUM_ATOL: float = 1e-6
"""A submission row counts as normalised when its three values sum to 1 within this tolerance."""

MAX_LISTED = 5
"""How many offending row ids an error message names."""


class MetricError(SpineError):
    """A submission or truth table cannot be scored (wrong columns, missing or unknown rows, bad values)."""


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(str(item) for item in list(items)[:MAX_LISTED])
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return shown + more


def _group_of(target: str) -> str:
    for group in GROUPS:
        if group in target:
            return group
    raise MetricError(f"target {target!r} belongs to none of the groups {sorted(GROUPS)}")


def _code_column(column: pd.Series, name: str) -> np.ndarray:
    """One truth column (severity names, empty, or codes 0/1/2/-1) -> int64 codes with -1 for missing."""
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        codes = np.where(np.isnan(values), MISSING, values)
        bad = ~np.isin(codes, [MISSING, *range(len(SEVERITIES))])
        if bad.any():
            raise MetricError(
                f"truth column {name!r} holds {_listed(sorted(set(codes[bad].tolist())))}; expected the codes "
                f"0, 1, 2 or -1 (missing), or the names {list(SEVERITIES)}"
            )
        return codes.astype(np.int64)
    text = column.astype("string").str.strip()
    missing = text.isna() | (text == "")
    codes = text.map(SEVERITY_CODE, na_action="ignore")
    bad = codes.isna() & ~missing
    if bad.any():
        raise MetricError(
            f"truth column {name!r} holds {_listed(sorted(set(text[bad].tolist())))}; expected one of "
            f"{list(SEVERITIES)} or an empty cell for a missing label"
        )
    return codes.fillna(MISSING).to_numpy(dtype=np.int64)


def truth_codes(truth: pd.DataFrame) -> pd.DataFrame:
    """Truth in train.csv form -> ``study_id`` (str) + the 25 TARGETS columns as int codes 0/1/2, -1 missing.

    Accepts the competition's strings (``Normal/Mild``, ``Moderate``, ``Severe``, empty) or codes
    (0/1/2/-1, NaN for missing). Extra columns are ignored; missing ones raise :class:`MetricError`.
    """
    needed = ["study_id", *TARGETS]
    absent = [name for name in needed if name not in truth.columns]
    if absent:
        raise MetricError(
            f"truth lacks the columns {_listed(absent)}; expected train.csv form: study_id + the 25 target "
            f"columns such as {TARGETS[0]!r}"
        )
    study_ids = truth["study_id"].astype(str).str.strip()
    duplicated = study_ids[study_ids.duplicated()].unique().tolist()
    if duplicated:
        raise MetricError(f"truth lists the studies {_listed(duplicated)} more than once; keep one row each")
    coded = {"study_id": study_ids.to_numpy()}
    for target in TARGETS:
        coded[target] = _code_column(truth[target], target)
    return pd.DataFrame(coded)


def truth_rows(truth: pd.DataFrame) -> pd.DataFrame:
    """Truth -> one row per scored target: ``row_id, study_id, target, group, code`` (missing labels dropped)."""
    coded = truth_codes(truth)
    long = coded.melt(id_vars="study_id", var_name="target", value_name="code")
    long = long[long["code"] != MISSING].reset_index(drop=True)
    long["row_id"] = long["study_id"] + "_" + long["target"]
    groups = {target: _group_of(target) for target in TARGETS}
    long["group"] = long["target"].map(groups)
    return long[["row_id", "study_id", "target", "group", "code"]]


def _checked_submission(submission: pd.DataFrame) -> pd.DataFrame:
    """Validate columns and values; return ``row_id`` (str) + the three float64 columns."""
    expected = ["row_id", *SUBMISSION_COLUMNS]
    if sorted(submission.columns) != sorted(expected):
        raise MetricError(
            f"submission has the columns {list(submission.columns)}; expected exactly {expected} "
            "(as in sample_submission.csv)"
        )
    out = pd.DataFrame({"row_id": submission["row_id"].astype(str).str.strip()})
    for name in SUBMISSION_COLUMNS:
        values = pd.to_numeric(submission[name], errors="coerce")
        not_numbers = out["row_id"][values.isna() & submission[name].notna()].tolist()
        if not_numbers:
            raise MetricError(f"submission column {name!r} is not a number in rows {_listed(not_numbers)}")
        out[name] = values.to_numpy(dtype=np.float64)
    probs = out[list(SUBMISSION_COLUMNS)].to_numpy()
    not_finite = out["row_id"][~np.isfinite(probs).all(axis=1)].tolist()
    if not_finite:
        raise MetricError(f"submission values must be finite; rows {_listed(not_finite)} are not (NaN or inf)")
    negative = out["row_id"][(probs < 0).any(axis=1)].tolist()
    if negative:
        raise MetricError(f"submission values must be >= 0; rows {_listed(negative)} hold negative values")
    duplicated = out["row_id"][out["row_id"].duplicated()].unique().tolist()
    if duplicated:
        raise MetricError(f"submission lists the rows {_listed(duplicated)} more than once; keep one each")
    return out


def weighted_log_loss(codes: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> float:
    """``sum(w * -log p[true]) / sum(w)`` with scikit-learn's clipping and row renormalisation.

    codes: (n,) int true class; probs: (n, k) non-negative scores; weights: (n,) sample weights.
    """
    clipped = np.clip(np.asarray(probs, dtype=np.float64), PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    losses = -np.log(clipped[np.arange(len(codes)), codes])
    return float(np.sum(weights * losses) / np.sum(weights))


def any_severe_spinal(study_ids: Iterable, codes: Iterable, severe: Iterable) -> float:
    """The any_severe_spinal part of the metric from scored spinal rows (one per study and level).

    study_ids, codes (true class 0/1/2), severe (predicted ``severe`` value): one entry per row. Per study,
    the label is 1 when any row is Severe, the prediction the largest ``severe`` value (clipped, not
    renormalised), the weight the largest row weight; the result is their weighted binary log loss.
    """
    weights_by_class = np.asarray(SEVERITY_WEIGHTS, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    rows = pd.DataFrame({"study_id": np.asarray(study_ids),
                         "is_severe": (codes == SEVERITY_CODE["Severe"]).astype(np.int64),
                         "weight": weights_by_class[codes], "severe": np.asarray(severe, dtype=np.float64)})
    per_study = rows.groupby("study_id").agg(label=("is_severe", "max"), weight=("weight", "max"),
                                             prediction=("severe", "max"))
    p_severe = np.clip(per_study["prediction"].to_numpy(dtype=np.float64), PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    binary = np.stack([1.0 - p_severe, p_severe], axis=1)
    return weighted_log_loss(per_study["label"].to_numpy(dtype=np.int64), binary,
                             per_study["weight"].to_numpy(dtype=np.float64))


def unnormalised_rows(submission: pd.DataFrame, atol: float = SUM_ATOL) -> list[str]:
    """Row ids whose three values do not sum to 1 within ``atol`` (the metric renormalises them)."""
    sums = submission[list(SUBMISSION_COLUMNS)].to_numpy(dtype=np.float64).sum(axis=1)
    return submission["row_id"].astype(str)[~np.isclose(sums, 1.0, rtol=0.0, atol=atol)].tolist()


def score(submission: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """The competition score of ``submission`` against ``truth``, with its four parts.

    submission: ``row_id, normal_mild, moderate, severe`` (sample_submission.csv form).
    truth: train.csv form (study_id + 25 target columns, names or codes; see :func:`truth_codes`).
    Returns ``{"score", "spinal_canal_stenosis", "neural_foraminal_narrowing", "subarticular_stenosis",
    "any_severe_spinal"}`` as floats. Raises :class:`MetricError` for wrong columns, non-numeric,
    non-finite or negative values, duplicate rows, rows of unknown studies or targets, or scored truth
    rows the submission lacks.
    """
    sub = _checked_submission(submission)
    rows = truth_rows(truth)
    if rows.empty:
        raise MetricError("truth holds no labelled rows; nothing to score")

    known = {f"{study}_{target}" for study in truth_codes(truth)["study_id"] for target in TARGETS}
    unknown = sorted(set(sub["row_id"]) - known)
    if unknown:
        raise MetricError(
            f"submission has {len(unknown)} row ids of no study/target in the truth: {_listed(unknown)}; "
            "row ids look like 4003253_left_neural_foraminal_narrowing_l4_l5"
        )
    merged = rows.merge(sub, on="row_id", how="left", validate="one_to_one")
    absent = merged.loc[merged["normal_mild"].isna(), "row_id"].tolist()
    if absent:
        raise MetricError(
            f"submission lacks {len(absent)} scored rows: {_listed(absent)}; every study needs all 25 rows"
        )

    weights_by_class = np.asarray(SEVERITY_WEIGHTS, dtype=np.float64)
    result: dict[str, float] = {}
    for group, key in GROUPS.items():
        part = merged[merged["group"] == group]
        if part.empty:
            raise MetricError(f"truth holds no labelled {group} rows; the score needs all four parts")
        codes = part["code"].to_numpy(dtype=np.int64)
        probs = part[list(SUBMISSION_COLUMNS)].to_numpy(dtype=np.float64)
        result[key] = weighted_log_loss(codes, probs, weights_by_class[codes])

    spinal = merged[merged["group"] == "spinal"]
    result[ANY_SEVERE_KEY] = any_severe_spinal(spinal["study_id"], spinal["code"], spinal["severe"])

    parts = np.array([result[key] for key in GROUPS.values()] + [result[ANY_SEVERE_KEY]])
    result["score"] = float(np.average(parts, weights=[1.0, 1.0, 1.0, ANY_SEVERE_SCALAR]))
    return {key: result[key] for key in SCORE_KEYS}


def class_priors(truth_train: pd.DataFrame, *, weighted: bool = True, pseudocount: float = 0.5) -> pd.DataFrame:
    """Class priors per target: DataFrame indexed by the 25 TARGETS, columns ``normal_mild, moderate,
    severe``, rows summing to 1.

    ``weighted=True`` (default) multiplies each class count by the metric's class weight (1, 2, 4) before
    normalising: this is the constant prediction with the lowest weighted log loss on the training set,
    so it is the honest baseline (plain frequencies score worse than uniform 1/3 under the 1/2/4 weights).
    ``weighted=False`` gives the plain class frequencies. ``pseudocount`` is added to every class count
    first (0.5: Jeffreys), so a class never seen in a small training set does not get probability 0;
    a target without labels and ``pseudocount == 0`` raises :class:`MetricError`.
    """
    if pseudocount < 0:
        raise MetricError(f"pseudocount must be >= 0, got {pseudocount}")
    coded = truth_codes(truth_train)
    counts = np.stack(
        [np.bincount(coded[t][coded[t] != MISSING], minlength=len(SEVERITIES)) for t in TARGETS]
    ).astype(np.float64) + pseudocount
    if weighted:
        counts = counts * np.asarray(SEVERITY_WEIGHTS, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    if (totals == 0).any():
        empty = [t for t, total in zip(TARGETS, totals[:, 0], strict=True) if total == 0]
        raise MetricError(f"no training labels for {_listed(empty)}; pass pseudocount > 0 to use uniform priors")
    return pd.DataFrame(counts / totals, index=pd.Index(TARGETS, name="target"), columns=list(SUBMISSION_COLUMNS))


def priors_submission(
    truth_train: pd.DataFrame, study_ids: Iterable[str | int], *, weighted: bool = True, pseudocount: float = 0.5
) -> pd.DataFrame:
    """A submission (25 rows per study) that predicts the training class priors of each target
    (see :func:`class_priors`): the baseline every model must beat by far.

    Rows are ``{study_id}_{target}`` in study then TARGETS order.
    """
    priors = class_priors(truth_train, weighted=weighted, pseudocount=pseudocount)
    studies = [str(study).strip() for study in study_ids]
    frame = pd.DataFrame(
        np.tile(priors.to_numpy(), (len(studies), 1)), columns=list(SUBMISSION_COLUMNS)
    )
    frame.insert(0, "row_id", [f"{study}_{target}" for study in studies for target in TARGETS])
    return frame
