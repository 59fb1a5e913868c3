"""Ingest of a synthetic competition dataset: every label lands on the synth ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

import spinedata as sd
from spinedata.ingest import ingest

HALF = 0.5
IN_PLANE_PIXELS = 0.01
"""In-plane agreement (pixels): the CSV keeps sub-pixel x, y, so only DICOM's decimal strings limit it
(far inside the required half pixel)."""
THROUGH_PLANE_ATOL_MM = 1e-3


def test_labels_world_coordinates_match_synth_truth(synth_dataset, tmp_path):
    result = ingest(synth_dataset, tmp_path / "train.zarr", workers=1)
    assert result.n_complete == result.n_studies == 3
    assert result.n_labels_unresolved == 0
    ds = sd.open_dataset(tmp_path / "train.zarr")
    truth = pd.read_csv(synth_dataset / "synth_truth.csv", dtype={"study_id": str})
    flaws = pd.read_csv(synth_dataset / "synth_flaws.csv", dtype={"study_id": str})
    labels = ds.labels.merge(truth[truth["split"] == "train"], on=["study_id", "condition", "level"],
                             suffixes=("", "_truth"))  # fmt: skip
    labels = labels[~labels["study_id"].isin(flaws["study_id"])]
    assert len(labels) > 0.9 * len(ds.labels)
    for row in labels.itertuples():
        stack = ds.study(row.study_id).series[row.series_id].stacks[row.stack]
        assert stack.instance_numbers[row.slice] == row.instance_number
        delta = np.array([row.world_x - row.world_x_truth, row.world_y - row.world_y_truth,
                          row.world_z - row.world_z_truth])  # fmt: skip
        g = stack.geometry
        r, c = g.orientation[:3], g.orientation[3:]
        drow, dcol = g.pixel_spacing
        # in plane: the same point; through plane: the label sits on the nearest slice, within half a step
        assert abs(delta @ r) <= IN_PLANE_PIXELS * dcol and abs(delta @ c) <= IN_PLANE_PIXELS * drow, (row, delta)
        assert abs(delta @ g.normal) <= HALF * g.slice_spacing + THROUGH_PLANE_ATOL_MM, (row, delta)
    targets = ds.targets.set_index("study_id")
    train = pd.read_csv(synth_dataset / "train.csv", dtype=str, keep_default_na=False).set_index("study_id")
    codes = {"Normal/Mild": 0, "Moderate": 1, "Severe": 2, "": -1}
    for study_id, row in train.iterrows():
        assert [codes[v] for v in row.values] == targets.loc[study_id, list(train.columns)].tolist()


def test_test_split_of_synth(synth_dataset, tmp_path):
    result = ingest(synth_dataset, tmp_path / "test.zarr", split="test", workers=1)
    assert result.n_complete == 1 and result.skipped == []
    ds = sd.open_dataset(tmp_path / "test.zarr")
    roles = sorted(s.role for s in ds.study(ds.study_ids[0]).series.values())
    assert roles == ["Axial T2", "Sagittal T1", "Sagittal T2/STIR"]
