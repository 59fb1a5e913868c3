"""Priors and calibration of the graders' probabilities, all fitted to the competition metric.

- ``weighted_prior_logits``: the log of the 1/2/4-weighted class priors, the best constant prediction under the
  weighted log loss; graders start from it.
- ``reweight_priors``: exact map of probabilities learned under one class prior to another,
  ``p ∝ q * prior_target / prior_train`` (used to undo oversampling).
- ``Calibration``: a temperature per condition group and a scale on each study's largest spinal P(severe)
  (any_severe_spinal), fitted on pooled out-of-fold predictions, stored in the run as ``calibration.json``
  and applied by ``spine classify``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from spinedata.conditions import GROUP_OF
from spinedata.constants import CONDITIONS, SEVERITY_WEIGHTS, SUBMISSION_COLUMNS
from spinedata.errors import SpineError
from spinedata.metric import weighted_log_loss

CALIBRATION_FILE = "calibration.json"
PSEUDOCOUNT = 0.5
"""Added to every class count before the priors are taken (a class never seen keeps a small probability)."""
TEMPERATURE_BOUNDS = (0.5, 2.0)
SCALE_BOUNDS = (0.5, 2.0)
MIN_ROWS_PER_CLASS = 5
"""A group's temperature is fitted only when its out-of-fold rows hold at least this many of every grade."""
MIN_STUDIES_PER_SIDE = 5
"""The any_severe scale is fitted only on at least this many studies with a severe spinal level, and as many
without: on fewer, one or two studies decide it (a fold with one severe study drove it to its bound)."""
SPINAL = CONDITIONS[0]


class CalibrationError(SpineError):
    """A calibration file that cannot be read or used."""


def weighted_prior_logits(counts: np.ndarray, weights=SEVERITY_WEIGHTS) -> np.ndarray:
    """``(..., 3)`` class counts -> ``(..., 3)`` log of the weighted priors ``w_c (n_c + 0.5) / sum``."""
    weighted = (np.asarray(counts, dtype=np.float64) + PSEUDOCOUNT) * np.asarray(weights, dtype=np.float64)
    return np.log(weighted / weighted.sum(axis=-1, keepdims=True))


def reweight_priors(probs: np.ndarray, prior_train: np.ndarray, prior_target: np.ndarray) -> np.ndarray:
    """``(..., 3)`` probabilities learned under ``prior_train`` -> the same evidence under ``prior_target``:
    ``p ∝ q * prior_target / prior_train`` (Bayes' rule; exact)."""
    out = np.asarray(probs, dtype=np.float64) * np.asarray(prior_target) / np.asarray(prior_train)
    return out / out.sum(axis=-1, keepdims=True)


def oversampling_correction(repeats) -> np.ndarray:
    """``(3,)`` logit correction for classes shown ``repeats[c]`` times: ``-log(repeats)``. Adding it to the
    logits is ``reweight_priors`` with ``prior_train / prior_target = repeats``."""
    repeats = np.asarray(repeats, dtype=np.float64)
    if repeats.shape != (3,) or (repeats < 1).any():
        raise ValueError(f"repeats must be 3 numbers >= 1, got {repeats.tolist()}")
    return -np.log(repeats)


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` of ``(..., 3)`` probabilities."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-15, 1.0)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


def scale_top_severe(spinal: np.ndarray, scale: float) -> np.ndarray:
    """``(5, 3)`` spinal probabilities of one study: the level with the largest P(severe) gets it multiplied
    by ``scale`` (at most 1), its other two classes rescaled to keep the row's sum."""
    out = np.array(spinal, dtype=np.float64)
    if not np.isfinite(out).all() or len(out) == 0:
        return out
    top = int(np.argmax(out[:, 2]))
    severe = min(out[top, 2] * scale, 1.0 - 1e-6)
    rest = out[top, :2].sum()
    out[top, :2] = out[top, :2] * ((1.0 - severe) / rest) if rest > 0 else (1.0 - severe) / 2
    out[top, 2] = severe
    return out


def _group_loss(probs: np.ndarray, codes: np.ndarray) -> float:
    weights = np.asarray(SEVERITY_WEIGHTS)[codes]
    return weighted_log_loss(codes, probs, weights)


def _spinal_parts(table: pd.DataFrame, scale: float) -> tuple[float, float]:
    """Spinal weighted log loss and any_severe_spinal of OOF spinal rows after ``scale_top_severe``."""
    probs, codes, any_label, any_pred, any_weight = [], [], [], [], []
    weights = np.asarray(SEVERITY_WEIGHTS)
    for _, rows in table.groupby("study_id", sort=False):
        p = scale_top_severe(rows[list(SUBMISSION_COLUMNS)].to_numpy(np.float64), scale)
        c = rows["target"].to_numpy(np.int64)
        probs.append(p)
        codes.append(c)
        any_label.append(int((c == 2).any()))
        any_pred.append(p[:, 2].max())
        any_weight.append(weights[c].max())
    probs, codes = np.concatenate(probs), np.concatenate(codes)
    severe = np.clip(np.asarray(any_pred), 1e-15, 1 - 1e-15)
    any_severe = weighted_log_loss(np.asarray(any_label), np.stack([1 - severe, severe], 1), np.asarray(any_weight))
    return _group_loss(probs, codes), any_severe


@dataclass
class Calibration:
    """Temperature per condition group (1 = unchanged) and the any_severe_spinal scale (1 = unchanged)."""

    temperature: dict[str, float] = field(default_factory=dict)
    any_severe_scale: float = 1.0
    fitted_on: dict[str, int] = field(default_factory=dict)
    """Out-of-fold rows per group the values were fitted on."""
    loss_before: dict[str, float] = field(default_factory=dict)
    loss_after: dict[str, float] = field(default_factory=dict)

    def apply(self, condition: str, probs: np.ndarray) -> np.ndarray:
        """``(..., 3)`` probabilities of one condition, with its group's temperature."""
        return with_temperature(probs, self.temperature.get(GROUP_OF[condition], 1.0))

    def apply_study_spinal(self, spinal: np.ndarray) -> np.ndarray:
        """``(5, 3)`` temperature-calibrated spinal rows of one study -> with the any_severe scale."""
        return scale_top_severe(spinal, self.any_severe_scale)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read and check a ``calibration.json`` (plain numbers within the fitted bounds)."""
        try:
            raw = json.loads(Path(path).read_text())
            temperature = {str(g): float(t) for g, t in raw.get("temperature", {}).items()}
            scale = float(raw.get("any_severe_scale", 1.0))
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise CalibrationError(f"{path}: not a readable calibration file ({error})") from error
        low, high = TEMPERATURE_BOUNDS
        if any(g not in set(GROUP_OF.values()) or not low <= t <= high for g, t in temperature.items()) \
                or not SCALE_BOUNDS[0] <= scale <= SCALE_BOUNDS[1]:
            raise CalibrationError(f"{path}: values outside the groups or bounds a fit can give: {raw}")
        return cls(temperature=temperature, any_severe_scale=scale)


def fit_calibration(oof: pd.DataFrame) -> Calibration:
    """Fit on out-of-fold rows (``study_id, condition, level, normal_mild, moderate, severe, target``): each
    group's temperature minimises its weighted log loss; the any_severe scale then minimises spinal loss +
    any_severe_spinal (the two metric parts it moves). Too few rows of a grade (``MIN_ROWS_PER_CLASS``) or
    too few studies with and without a severe spinal level (``MIN_STUDIES_PER_SIDE``) keep 1: small
    out-of-fold sets are better left uncalibrated than fitted to a handful of cases."""
    known = oof[oof["target"] >= 0].assign(group=lambda t: t["condition"].map(GROUP_OF))
    result = Calibration()
    for group, rows in known.groupby("group"):
        probs, codes = rows[list(SUBMISSION_COLUMNS)].to_numpy(np.float64), rows["target"].to_numpy(np.int64)
        result.fitted_on[group] = len(rows)
        if np.bincount(codes, minlength=3).min() < MIN_ROWS_PER_CLASS:
            continue
        fit = minimize_scalar(lambda log_t, p=probs, c=codes: _group_loss(with_temperature(p, math.exp(log_t)), c),
                              bounds=tuple(math.log(b) for b in TEMPERATURE_BOUNDS), method="bounded")
        result.temperature[group] = float(math.exp(fit.x))
        result.loss_before[group] = _group_loss(probs, codes)
        result.loss_after[group] = float(fit.fun)
    spinal = known[known["condition"] == SPINAL]
    severe_studies = spinal.groupby("study_id")["target"].max().eq(2)
    if severe_studies.sum() >= MIN_STUDIES_PER_SIDE and (~severe_studies).sum() >= MIN_STUDIES_PER_SIDE:
        calibrated = spinal.copy()
        calibrated[list(SUBMISSION_COLUMNS)] = with_temperature(
            spinal[list(SUBMISSION_COLUMNS)].to_numpy(np.float64), result.temperature.get("spinal", 1.0))
        fit = minimize_scalar(lambda log_s: sum(_spinal_parts(calibrated, math.exp(log_s))),
                              bounds=tuple(math.log(b) for b in SCALE_BOUNDS), method="bounded")
        scale = float(math.exp(fit.x))
        if sum(_spinal_parts(calibrated, scale)) < sum(_spinal_parts(calibrated, 1.0)):
            result.any_severe_scale = scale
        result.loss_before["any_severe_spinal"] = _spinal_parts(spinal, 1.0)[1]
        result.loss_after["any_severe_spinal"] = _spinal_parts(calibrated, result.any_severe_scale)[1]
    return result
