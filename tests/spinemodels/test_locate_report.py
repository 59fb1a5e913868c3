"""Stage-1 warnings reach the user: the summary of ``spine locate``, ``spine classify``'s log and the marks of
``spine show``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spinedata.constants import CONDITIONS, LEVELS
from spinedata.pictures import render_study, warned
from spinemodels.inference.locate_report import coords_warnings, locate_summary
from tests.helpers.spinemodels_fakes import make_fake_dataset


def _coords(fake) -> pd.DataFrame:
    """coords.csv-like rows at the true points of every study, no warnings."""
    truth = fake.truth.copy()
    truth["series_id"] = "1"
    truth["stack"] = 0
    truth["confidence"] = 0.6
    truth["warning"] = ""
    return truth


def test_the_summary_counts_studies_and_points_with_warnings():
    fake = make_fake_dataset(n_studies=4, seed=0)
    coords = _coords(fake)
    first, second = fake.study_ids[:2]
    spinal_l5 = (coords["study_id"] == first) & (coords["level"] == LEVELS[-1])
    coords.loc[spinal_l5, "warning"] = "check failed: L4/L5-L5/S1 13 mm apart (plausible 18-55)"
    coords.loc[spinal_l5, "confidence"] = 0.01
    coords = coords[coords["study_id"] != fake.study_ids[3]]  # a study without points
    lines = locate_summary(coords, fake.study_ids)
    assert lines[0] == f"summary: 3 of 4 studies located; 1 without points ({fake.study_ids[3]})"
    assert lines[1] == f"summary: 5 of {25 * 3} points carry a warning, in 1 studies"
    assert lines[2].startswith(f"  study {first}: 5 points with a warning, lowest confidence 0.010: check failed")
    assert len(lines) == 3
    notes = coords_warnings(coords)
    assert len(notes) == 1 and notes[0].startswith(f"study {first}: 5 of its points carry a stage-1 warning")
    assert coords_warnings(coords, [second]) == []
    clean = locate_summary(_coords(fake), fake.study_ids)
    assert clean[1] == f"summary: 0 of {25 * 4} points carry a warning, in 0 studies" and len(clean) == 2


def test_show_marks_the_points_with_a_warning(tmp_path, monkeypatch):
    import matplotlib.axes

    fake = make_fake_dataset(n_studies=1, seed=0, size=64)
    study_id = fake.study_ids[0]
    coords = _coords(fake)
    coords.loc[(coords["condition"] == CONDITIONS[0]) & (coords["level"] == LEVELS[1]), "warning"] = "fallback: x"
    assert warned(coords).sum() == 1 and not warned(coords.drop(columns="warning")).any()
    squares = []
    original = matplotlib.axes.Axes.plot

    def plot(self, *args, **kwargs):
        if len(args) >= 3 and args[2] == "s":
            squares.append((args[0], args[1], kwargs.get("label")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    out = render_study(fake, study_id, tmp_path / "study.png", coords=coords)
    assert out.is_file()
    stack = fake.study(study_id).series["1"].stacks[0]
    point = coords[warned(coords)][["world_x", "world_y", "world_z"]].to_numpy(float)[0]
    projection = stack.project(point)
    assert len(squares) == 1 and np.allclose(squares[0][:2], (projection.col, projection.row))
    assert squares[0][2] == "predicted, with a warning"
