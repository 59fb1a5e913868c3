"""``spine export``: the files it writes, the points table beside them, and its one-line errors."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from spinedata.ingest import ingest
from spinedata.store import open_dataset
from tests.helpers.cli_helpers import cli_error
from tests.helpers.ingest_data import write_competition_dataset
from tests.helpers.testdata import dicom_case

nib = pytest.importorskip("nibabel")
sitk = pytest.importorskip("SimpleITK")

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_competition_dataset(root / "data")
    ingest(root / "data", root / "store.zarr", split="train", workers=1)
    return root / "store.zarr"


def test_export_writes_one_nifti_per_stack_and_the_points_beside_them(store, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(store), str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 4 images and 2 points" in result.output
    dataset = open_dataset(store)
    for study in dataset:
        for series in study.series.values():
            for stack in series.stacks:
                image = nib.load(out / study.study_id / f"{series.series_id}_{stack.index}.nii.gz")
                np.testing.assert_array_equal(np.asanyarray(image.dataobj), stack.read().transpose(2, 1, 0))
                np.testing.assert_allclose(image.affine, stack.to_nifti().affine, atol=1e-4)
        points = pd.read_csv(out / study.study_id / "points.csv", dtype={"study_id": str, "series_id": str})
        assert len(points) == 1
        row = points.iloc[0]
        assert row["image"] == f"{row['series_id']}_{row['stack']}.nii.gz" and not row["resampled"]
        np.testing.assert_allclose([row["i"], row["j"], row["k"]], [row["x"], row["y"], row["slice"]], atol=1e-6)
        np.testing.assert_allclose([row["lps_x"], row["lps_y"], row["lps_z"]],
                                   [row["world_x"], row["world_y"], row["world_z"]])  # fmt: skip
        image = nib.load(out / study.study_id / row["image"])
        np.testing.assert_allclose(nib.affines.apply_affine(image.affine, [row["i"], row["j"], row["k"]]),
                                   [row["ras_x"], row["ras_y"], row["ras_z"]], atol=1e-3)  # fmt: skip


def test_export_nrrd_of_one_study_and_points_from_a_coords_csv(store, tmp_path):
    labels = open_dataset(store).labels
    coords = labels[labels["study_id"] == "1002"].assign(condition="found")
    coords_path = tmp_path / "coords.csv"
    coords.to_csv(coords_path, index=False)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(store), str(out), "--format", "nrrd", "--study", "1002",
                                 "--points", str(coords_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["1002"]
    points = pd.read_csv(out / "1002" / "points.csv")
    assert list(points["condition"]) == ["found"]
    row = points.iloc[0]
    image = sitk.ReadImage(str(out / "1002" / row["image"]))
    np.testing.assert_allclose(image.TransformContinuousIndexToPhysicalPoint((row["i"], row["j"], row["k"])),
                               [row["lps_x"], row["lps_y"], row["lps_z"]], atol=1e-6)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--study", "../1001"], "study id '../1001' cannot name a store entry"),
        (["--study", "999"], "study '999' is not in"),
        (["--format", "png"], "--format 'png' is not one of nifti, nrrd, mha"),
    ],
)
def test_bad_options_are_one_line_errors(monkeypatch, capsys, store, tmp_path, args, expected):
    message = cli_error(monkeypatch, capsys, ["export", str(store), str(tmp_path / "out"), *args])
    assert message.startswith("error: ") and expected in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_output_inside_the_store_or_a_file_is_refused(monkeypatch, capsys, store, tmp_path):
    message = cli_error(monkeypatch, capsys, ["export", str(store), str(store / "exports")])
    assert "lies inside the store" in message and not (store / "exports").exists()
    a_file = tmp_path / "a.txt"
    a_file.write_text("keep")
    message = cli_error(monkeypatch, capsys, ["export", str(store), str(a_file)])
    assert "is a file, not a folder" in message and a_file.read_text() == "keep"


def test_missing_extra_is_one_line(monkeypatch, capsys, store, tmp_path):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    message = cli_error(monkeypatch, capsys, ["export", str(store), str(tmp_path / "out")])
    assert message == "error: nifti export needs the interop extra: pip install 'spine[interop]' (nibabel is not installed)"


@pytest.mark.testdata
def test_irregular_stacks_are_left_out_unless_resampled(testdata_dir, tmp_path):
    store = tmp_path / "store.zarr"
    ingest(dicom_case(testdata_dir, "dicom2nifti/failing/sliceincrement/001"), store, split="test", workers=1)
    result = runner.invoke(app, ["export", str(store), str(tmp_path / "plain")])
    assert result.exit_code == 0, result.output
    assert "wrote 0 images" in result.output and "nonuniform, missing_slices" in result.output
    assert "--resample exports them" in result.output
    result = runner.invoke(app, ["export", str(store), str(tmp_path / "resampled"), "--resample"])
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "resampled").glob("*/*.nii.gz")
    image = nib.load(path)
    assert image.shape[2] == 5 and image.get_data_dtype() == np.float32  # 4 slices, one missing: 5
