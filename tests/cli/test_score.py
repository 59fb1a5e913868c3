"""``spine score``: the table, the JSON object and the one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.errors import run_app
from spinedata.constants import SEVERITIES, TARGETS
from spinedata.metric import SCORE_KEYS, priors_submission, score
from tests.helpers.cli_helpers import cli_error

runner = CliRunner()


@pytest.fixture
def csv_pair(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.choice(3, size=(6, len(TARGETS)), p=[0.6, 0.25, 0.15])
    truth = pd.DataFrame([[SEVERITIES[c] for c in row] for row in codes], columns=list(TARGETS))
    truth.iloc[0, 3] = np.nan  # a missing label: an empty cell in the CSV
    truth.insert(0, "study_id", [str(4003253 + i) for i in range(6)])
    truth_path = tmp_path / "train.csv"
    truth.to_csv(truth_path, index=False)
    sub = priors_submission(truth, truth["study_id"])
    sub_path = tmp_path / "submission.csv"
    sub.to_csv(sub_path, index=False)
    return sub_path, truth_path, score(sub, truth)


def test_json_prints_one_object_with_the_five_keys(csv_pair):
    sub_path, truth_path, expected = csv_pair
    result = runner.invoke(app, ["score", str(sub_path), "--truth", str(truth_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert sorted(payload) == sorted(SCORE_KEYS)
    for key in SCORE_KEYS:
        assert payload[key] == pytest.approx(expected[key], rel=1e-12)


def test_table_shows_every_part(csv_pair):
    sub_path, truth_path, expected = csv_pair
    result = runner.invoke(app, ["score", str(sub_path), "--truth", str(truth_path)])
    assert result.exit_code == 0, result.output
    for key in SCORE_KEYS:
        assert f"{expected[key]:.6f}" in result.stdout
    assert "any_severe_spinal" in result.stdout


def test_unnormalised_rows_give_a_note(csv_pair, tmp_path):
    sub_path, truth_path, _ = csv_pair
    sub = pd.read_csv(sub_path)
    sub[["normal_mild", "moderate", "severe"]] *= 0.5  # below 1, so clipping leaves the ratios alone
    doubled = tmp_path / "doubled.csv"
    sub.to_csv(doubled, index=False)
    result = runner.invoke(app, ["score", str(doubled), "--truth", str(truth_path), "--json"])
    assert result.exit_code == 0
    assert "150 rows do not sum to 1" in result.stderr
    doubled_score = json.loads(result.stdout)
    plain = json.loads(runner.invoke(app, ["score", str(sub_path), "--truth", str(truth_path), "--json"]).stdout)
    for key in ("spinal_canal_stenosis", "neural_foraminal_narrowing", "subarticular_stenosis"):
        assert doubled_score[key] == pytest.approx(plain[key])  # rows renormalised
    assert doubled_score["any_severe_spinal"] != pytest.approx(plain["any_severe_spinal"])  # raw severe, as Kaggle


def test_missing_rows_are_one_line_error(csv_pair, tmp_path, monkeypatch, capsys):
    sub_path, truth_path, _ = csv_pair
    short = tmp_path / "short.csv"
    pd.read_csv(sub_path).iloc[:-3].to_csv(short, index=False)
    err = cli_error(monkeypatch, capsys, ["score", str(short), "--truth", str(truth_path)])  # exit code 1
    assert err.startswith("error: submission lacks 3 scored rows") and "\n" not in err


def test_missing_file_is_an_error(tmp_path, csv_pair):
    _, truth_path, _ = csv_pair
    result = runner.invoke(app, ["score", str(tmp_path / "nope.csv"), "--truth", str(truth_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, FileNotFoundError)


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty (no header, no rows)"),
    ("row_id,normal_mild,moderate,severe\n", "has a header but no rows"),
    ('row_id,normal_mild\n"x,1\n', "is not a readable CSV (Error tokenizing data."),
    (b"\xff\xfe\x00r\x00o", "is not a readable CSV"),
])  # fmt: skip
def test_an_empty_or_malformed_submission_is_one_line_error(csv_pair, tmp_path, monkeypatch, capsys, content, message):
    _, truth_path, _ = csv_pair
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    err = cli_error(monkeypatch, capsys, ["score", str(bad), "--truth", str(truth_path)])
    assert err.startswith(f"error: submission {bad} {message}") and "\n" not in err


def test_an_os_error_is_one_line_error(csv_pair, monkeypatch, capsys):
    """A write the system refuses (here PermissionError, as for a read-only output folder; tests may run as
    root, which no permission stops) is one line; SPINE_DEBUG=1 shows the traceback."""
    import spinedata.metric

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/read-only/out.csv")

    sub_path, truth_path, _ = csv_pair
    monkeypatch.setattr(spinedata.metric, "score", refuse)
    err = cli_error(monkeypatch, capsys, ["score", str(sub_path), "--truth", str(truth_path)])
    assert err == "error: Permission denied: '/read-only/out.csv'"
    monkeypatch.setenv("SPINE_DEBUG", "1")
    with pytest.raises(PermissionError):
        run_app(app)
