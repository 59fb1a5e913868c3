"""Offsets learned from labels; placement in the nearest stack of the right series."""

from __future__ import annotations

import numpy as np
import pytest

from spinedata.constants import CONDITIONS, LEVELS
from spinemodels.placement import average_offsets, learn_offsets, place_point
from tests.helpers.spinemodels_fakes import (
    FORAMINAL_X_MM,
    SUBARTICULAR_X_MM,
    SUBARTICULAR_Y_MM,
    make_fake_dataset,
)


@pytest.fixture(scope="module")
def fake():
    return make_fake_dataset(n_studies=5, seed=3)


def test_offsets_are_the_mean_labelled_offsets(fake):
    offsets = learn_offsets(fake.labels).set_index(["condition", "level"])
    assert len(offsets) == 4 * len(LEVELS)
    left = offsets.loc[(CONDITIONS[1], "L3/L4")]
    # labelled points sit on slice planes, so the offset carries up to half a slice (1.75 mm) of rounding
    assert left["dx"] == pytest.approx(FORAMINAL_X_MM, abs=2.0) and left["n"] == 5
    sub = offsets.loc[(CONDITIONS[4], "L5/S1")]
    assert sub["dx"] == pytest.approx(-SUBARTICULAR_X_MM, abs=1.0)
    assert sub["dy"] == pytest.approx(SUBARTICULAR_Y_MM, abs=1.0)


def test_offsets_use_only_the_given_studies_and_fill_levels_without_examples(fake):
    labels = fake.labels
    one = learn_offsets(labels, ["100"]).set_index(["condition", "level"])
    rows = labels[(labels["study_id"] == "100") & (labels["level"] == "L1/L2")]
    spinal = rows[rows["condition"] == CONDITIONS[0]][["world_x", "world_y", "world_z"]].to_numpy()[0]
    left = rows[rows["condition"] == CONDITIONS[1]][["world_x", "world_y", "world_z"]].to_numpy()[0]
    assert np.allclose(one.loc[(CONDITIONS[1], "L1/L2")][["dx", "dy", "dz"]].to_numpy(float), left - spinal)
    missing = labels[~((labels["condition"] == CONDITIONS[3]) & (labels["level"] == "L1/L2"))]
    filled = learn_offsets(missing).set_index(["condition", "level"])
    assert filled.loc[(CONDITIONS[3], "L1/L2"), "n"] == 0
    assert filled.loc[(CONDITIONS[3], "L1/L2"), "dx"] == pytest.approx(SUBARTICULAR_X_MM, abs=1.0)
    averaged = average_offsets([one.reset_index(), learn_offsets(labels, ["101"])])
    assert averaged["n"].max() == 2


def test_points_go_to_the_nearest_axial_slab(fake):
    study = fake.study("100")
    slabs = study.series["3"].stacks
    for k, slab in enumerate(slabs):
        centre = slab.voxel_to_world([1.4, 20.0, 30.0])  # inside slab k, nearer slice 1 than 2
        placed = place_point(study, centre, CONDITIONS[3])
        assert (placed.series_id, placed.stack_index, placed.slice) == ("3", k, 1)
        assert placed.inside and not placed.warning
        assert placed.distance_mm == pytest.approx(0.4 * 4.0)
        assert placed.instance_number == slab.instance_numbers[1]
        back = slab.voxel_to_world([placed.slice, placed.row, placed.col])
        assert np.linalg.norm(back - centre) == pytest.approx(abs(placed.distance_mm))


def test_a_point_outside_every_stack_warns_and_uses_the_nearest(fake):
    study = fake.study("100")
    slab = study.series["3"].stacks[2]
    beside = slab.voxel_to_world([1.0, 20.0, -40.0])  # in slab 2's plane, 40 pixels right of its first column
    placed = place_point(study, beside, CONDITIONS[4])
    assert (placed.stack_index, placed.slice) == (2, 1) and not placed.inside
    assert placed.col == pytest.approx(-40.0)
    assert "outside every Axial T2 stack" in placed.warning


def test_a_missing_series_falls_back_with_a_warning(fake):
    study = fake.study("101")
    point = study.series["2"].stacks[0].voxel_to_world([5.0, 30.0, 30.0])
    del study.series["2"]  # no Sagittal T1
    placed = place_point(study, point, CONDITIONS[1])
    assert placed.series_id == "1" and "no Sagittal T1 series" in placed.warning
