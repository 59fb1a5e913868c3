"""Priors, the oversampling correction and the calibration of stage 2 (spinemodels.calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spinedata.constants import CONDITIONS, LEVELS, SEVERITY_WEIGHTS
from spinedata.metric import weighted_log_loss
from spinemodels.calibration import (
    Calibration,
    CalibrationError,
    fit_calibration,
    oversampling_correction,
    reweight_priors,
    scale_top_severe,
    weighted_prior_logits,
    with_temperature,
)
from spinemodels.data.grading import CropPoint, GradeSample, level_samples

simplex = arrays(np.float64, (4, 3), elements=st.floats(0.01, 1.0)).map(lambda a: a / a.sum(1, keepdims=True))
positive3 = arrays(np.float64, (3,), elements=st.floats(0.05, 1.0))


@settings(max_examples=60, deadline=None)
@given(simplex, positive3, positive3)
def test_reweighting_priors_is_bayes_rule_and_inverts_exactly(q, prior_train, prior_target):
    p = reweight_priors(q, prior_train, prior_target)
    np.testing.assert_allclose(p.sum(1), 1.0)
    # Bayes: the likelihood ratio q / prior_train is unchanged, only the prior moves
    ratio = p / prior_target
    np.testing.assert_allclose(ratio / ratio.sum(1, keepdims=True), (q / prior_train) / (q / prior_train).sum(1, keepdims=True))
    np.testing.assert_allclose(reweight_priors(p, prior_target, prior_train), q, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(simplex, st.tuples(*(st.integers(1, 4),) * 3))
def test_oversampling_correction_is_the_prior_reweighting_of_the_repeats(q, repeats):
    corrected = np.exp(np.log(q) + oversampling_correction(repeats))
    corrected /= corrected.sum(1, keepdims=True)
    np.testing.assert_allclose(corrected, reweight_priors(q, np.asarray(repeats, float), np.ones(3)), rtol=1e-9)


def test_oversampling_correction_refuses_fewer_than_one_showing():
    with pytest.raises(ValueError, match="repeats"):
        oversampling_correction([1, 0, 2])


def test_weighted_priors_are_the_best_constant_under_the_weighted_log_loss():
    counts = np.array([70.0, 20.0, 10.0])
    best = np.exp(weighted_prior_logits(counts))
    codes = np.repeat([0, 1, 2], counts.astype(int))
    weights = np.asarray(SEVERITY_WEIGHTS)[codes]

    def loss(p):
        return weighted_log_loss(codes, np.tile(p, (len(codes), 1)), weights)

    rng = np.random.default_rng(0)
    for _ in range(50):  # no other constant does better (the pseudocount costs almost nothing)
        other = rng.dirichlet(np.ones(3))
        assert loss(best) <= loss(other) + 1e-9
    assert loss(best) < loss(np.full(3, 1 / 3))


def test_every_labelled_level_and_side_is_one_sample_and_repeats_follow_the_grade():
    point = CropPoint("s", 0, (0.0, 0.0, 0.0))
    targets = ((0, 1), (2, -1), (0, 0), (1, 2), (-1, 0))
    points = tuple((point, point) for _ in LEVELS)
    sample = GradeSample("a", (*points[:4], (None, point)), targets)
    once = level_samples([sample], need_target=True)
    assert sorted((s.level, s.side, s.target) for s in once) == [
        (0, 0, 0), (0, 1, 1), (1, 0, 2), (2, 0, 0), (2, 1, 0), (3, 0, 1), (3, 1, 2), (4, 1, 0)]
    repeated = level_samples([sample], need_target=True, repeats=(1, 2, 3))
    assert len(repeated) == 4 * 1 + 2 * 2 + 2 * 3
    everything = level_samples([sample], need_target=False)
    assert len(everything) == 9  # the unlabelled (1, 1) point too; (4, 0) has no point


def _oof(rng, n_studies=60, temperature=2.5):
    """Out-of-fold spinal + foraminal rows whose probabilities are sharpened versions of calibrated ones."""
    rows = []
    for s in range(n_studies):
        for condition in CONDITIONS[:2]:
            for level in LEVELS:
                true_p = rng.dirichlet([4, 1.5, 1])
                target = int(rng.choice(3, p=true_p))
                shown = with_temperature(true_p, 1 / temperature)  # overconfident
                rows.append({"study_id": str(s), "condition": condition, "level": level,
                             "normal_mild": shown[0], "moderate": shown[1], "severe": shown[2], "target": target})
    return pd.DataFrame(rows)


def test_calibration_lowers_the_out_of_fold_loss_of_overconfident_predictions(tmp_path):
    oof = _oof(np.random.default_rng(1))
    fitted = fit_calibration(oof)
    assert set(fitted.temperature) == {"spinal", "foraminal"}
    assert all(t > 1.5 for t in fitted.temperature.values())  # it softens them
    for group in ("spinal", "foraminal"):
        assert fitted.loss_after[group] < fitted.loss_before[group] - 0.05
    # the same improvement on new rows drawn the same way (not fitted on them)
    fresh = _oof(np.random.default_rng(2))
    for condition in CONDITIONS[:2]:
        rows = fresh[fresh["condition"] == condition]
        probs, codes = rows[["normal_mild", "moderate", "severe"]].to_numpy(), rows["target"].to_numpy()
        weights = np.asarray(SEVERITY_WEIGHTS)[codes]
        assert weighted_log_loss(codes, fitted.apply(condition, probs), weights) < \
            weighted_log_loss(codes, probs, weights)
    fitted.save(tmp_path / "calibration.json")
    again = Calibration.load(tmp_path / "calibration.json")
    assert again.temperature == pytest.approx(fitted.temperature) and again.any_severe_scale == fitted.any_severe_scale


def test_a_calibration_file_with_impossible_values_is_refused(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text('{"temperature": {"spinal": 1e9}, "any_severe_scale": 1.0}')
    with pytest.raises(CalibrationError, match="outside"):
        Calibration.load(path)
    path.write_text("[1, 2")
    with pytest.raises(CalibrationError, match="not a readable"):
        Calibration.load(path)


def test_scaling_the_top_severe_level_keeps_rows_summing_to_one():
    spinal = np.array([[0.8, 0.15, 0.05], [0.5, 0.2, 0.3], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.7, 0.2, 0.1]])
    out = scale_top_severe(spinal, 1.5)
    np.testing.assert_allclose(out.sum(1), 1.0)
    assert out[1, 2] == pytest.approx(0.45) and out[1, 0] / out[1, 1] == pytest.approx(2.5)
    np.testing.assert_array_equal(np.delete(out, 1, 0), np.delete(spinal, 1, 0))


def test_too_few_severe_studies_or_rare_grades_leave_the_calibration_alone():
    oof = _oof(np.random.default_rng(3), n_studies=16)
    spinal = oof["condition"] == CONDITIONS[0]
    severe_studies = oof.loc[spinal & (oof["target"] == 2), "study_id"].unique()
    oof.loc[spinal & (oof["target"] == 2) & (oof["study_id"] != severe_studies[0]), "target"] = 1  # one left
    fitted = fit_calibration(oof)
    assert fitted.any_severe_scale == 1.0 and "any_severe_spinal" not in fitted.loss_after
    few = oof[~((oof["condition"] == CONDITIONS[1]) & (oof["target"] == 2))].copy()  # no severe foraminal row
    assert "foraminal" not in fit_calibration(few).temperature
    assert fit_calibration(few).apply(CONDITIONS[1], np.array([0.7, 0.2, 0.1])) == pytest.approx([0.7, 0.2, 0.1])
