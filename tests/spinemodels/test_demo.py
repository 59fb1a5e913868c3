"""``spine demo`` (the whole job, smallest setting) and ``spine show`` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from spinedata.pictures import FIGURE_DPI, FIGURE_INCHES
from spinemodels.demo import DemoSettings, localisation_errors, prepare_workdir, truth_table

runner = CliRunner()
PNG_SIZE = (int(FIGURE_INCHES[0] * FIGURE_DPI), int(FIGURE_INCHES[1] * FIGURE_DPI))


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return isinstance(value, int | float) and math.isfinite(value)


def test_demo_runs_every_step_and_writes_its_files(tmp_path):
    work = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--workdir", str(work), "--quick", "--studies", "5", "--test-studies", "1",
                                 "--matrix", "96", "--no-master", "--workers", "1"])
    assert result.exit_code == 0, result.output
    for command in ("spine synth", "spine ingest", "spine train pkg:cpu/keypoints", "spine locate",
                    "spine classify", "spine score", "spine show"):
        assert command in result.stdout
    summary = json.loads((work / "summary.json").read_text())
    assert {"scores", "localisation", "timings_s", "runs", "commands", "total_s", "files"} <= set(summary)
    assert _finite(summary["scores"]["model"]) and _finite(summary["scores"]["class_priors"])
    assert set(summary["scores"]["model"]) == {"score", "spinal_canal_stenosis", "neural_foraminal_narrowing",
                                               "subarticular_stenosis", "any_severe_spinal"}
    assert _finite({k: v for k, v in summary["localisation"].items()})
    assert summary["localisation"]["points"] == 25 and summary["localisation"]["points_without_truth"] == 0
    assert set(summary["runs"]) == {"slice_finder", "keypoints", "fine_keypoints", "grade_spinal", "grade_foraminal",
                                    "grade_subarticular", "grade_spinal_axial"}
    for run in map(Path, summary["runs"].values()):
        assert run.parent == work / "runs"
        assert (run / "config.yaml").is_file() and (run / "fold_0" / "best.pt").is_file()
    submission = pd.read_csv(work / "submission.csv")
    assert len(submission) == 25
    (picture,) = summary["files"]["pictures"]
    assert Image.open(picture).size == PNG_SIZE


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(Exception, match="did not write"):
        prepare_workdir(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_settings_refuse_too_few_studies(tmp_path):
    with pytest.raises(Exception, match="at least 5"):
        DemoSettings(workdir=tmp_path, studies=3)


def test_truth_table_and_localisation_errors_from_synth_truth():
    truth = pd.DataFrame({"study_id": ["7"] * 2, "split": ["test"] * 2,
                          "condition": ["Spinal Canal Stenosis", "Left Subarticular Stenosis"],
                          "level": ["L4/L5", "L1/L2"], "world_x": [0.0, 10.0], "world_y": [0.0, 0.0],
                          "world_z": [0.0, 0.0], "severity": ["Severe", "Moderate"]})
    table = truth_table(truth, "test")
    assert table.loc[0, "study_id"] == "7"
    assert table.loc[0, "spinal_canal_stenosis_l4_l5"] == "Severe"
    assert table.loc[0, "left_subarticular_stenosis_l1_l2"] == "Moderate"
    assert table.shape == (1, 26)
    coords = truth.drop(columns=["split", "severity"]).assign(world_y=[3.0, 0.0], world_z=[4.0, 0.0])
    errors = localisation_errors(coords, truth)
    assert errors["spinal_median_mm"] == pytest.approx(5.0)
    assert errors["subarticular_median_mm"] == pytest.approx(0.0)
    assert errors["subarticular_within_5mm"] == 1.0


@pytest.fixture(scope="module")
def store(synth_store):
    return synth_store


def test_show_writes_a_picture_of_a_study(store, synth_dataset, tmp_path):
    import spinedata as sd

    ds = sd.open_dataset(store)
    study_id = ds.study_ids[0]
    labels = ds.labels
    coords = labels[labels["study_id"] == study_id].copy()
    coords["world_x"] += 2.0  # predictions 2 mm off the labels
    coords_path = tmp_path / "coords.csv"
    coords.to_csv(coords_path, index=False)
    from spinedata.constants import CONDITIONS, LEVELS, row_id

    submission = pd.DataFrame({"row_id": [row_id(study_id, c, lv) for c in CONDITIONS for lv in LEVELS],
                               "normal_mild": 0.7, "moderate": 0.2, "severe": 0.1})
    submission_path = tmp_path / "submission.csv"
    submission.to_csv(submission_path, index=False)
    out = tmp_path / "study.png"
    result = runner.invoke(app, ["show", str(store), study_id, "--coords", str(coords_path),
                                 "--submission", str(submission_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.size == PNG_SIZE
    assert len(np.unique(np.asarray(image.convert("L")))) > 50  # a real picture, not a blank canvas


def test_show_an_unknown_study_is_a_clear_error(store, tmp_path):
    result = runner.invoke(app, ["show", str(store), "nope", "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0
    assert not (tmp_path / "x.png").exists()


def test_mid_sagittal_is_the_labelled_slice_of_the_spinal_points(store):
    import spinedata as sd
    from spinedata.constants import CONDITIONS
    from spinedata.pictures import mid_sagittal, study_points

    ds = sd.open_dataset(store)
    for study_id in ds.study_ids:
        spinal = ds.labels[(ds.labels["study_id"] == study_id) & (ds.labels["condition"] == CONDITIONS[0])]
        series_id, k, stack, slice_ = mid_sagittal(ds.study(study_id), study_points(ds, study_id))
        assert series_id == spinal["series_id"].iloc[0] and k == spinal["stack"].iloc[0]
        assert slice_ == int(np.median(spinal["slice"]))
