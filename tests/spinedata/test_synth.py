"""Synthetic studies: layout, labels against the exact 3D truth, DICOM validity, determinism, acquisition variety."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from spinedata.conditions import CONDITION_ROLE
from spinedata.constants import (
    CONDITIONS,
    LEVELS,
    ROLES,
    SEVERITIES,
    SUBMISSION_COLUMNS,
    TARGETS,
    target_name,
)
from spinedata.errors import OptionError as ConfigError
from spinedata.synth import SynthOptions, generate
from spinedata.synth.acquisition import plan_series
from spinedata.synth.anatomy import LEVEL_DISC, sample_spine
from spinedata.synth.disease import sample_severities
from spinedata.synth.options import SMALL

TINY = {**SMALL, "sagittal_matrices": (64,), "axial_matrices": (48,)}
"""Even smaller than SMALL: for tests that only look at files and CSVs."""


def _header_world(path: Path, x: float, y: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """World point of column x, row y of a DICOM file (docs/design.md), its slice normal, and the pixel spacing."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    drow, dcol = (float(v) for v in ds.PixelSpacing)
    world = ipp + x * dcol * iop[:3] + y * drow * iop[3:]
    return world, np.cross(iop[:3], iop[3:]), drow, dcol


def test_layout_and_csv_columns(synth_dataset: Path) -> None:
    root = synth_dataset
    train = pd.read_csv(root / "train.csv", dtype={"study_id": str})
    assert list(train.columns) == ["study_id", *TARGETS]
    assert len(train) == 3
    assert set(train[list(TARGETS)].stack().unique()) <= set(SEVERITIES)
    labels = pd.read_csv(root / "train_label_coordinates.csv", dtype={"study_id": str, "series_id": str})
    assert list(labels.columns) == ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    assert len(labels) == 3 * 25  # no flaws asked for: every condition and level labelled once
    series = pd.read_csv(root / "train_series_descriptions.csv", dtype={"study_id": str, "series_id": str})
    assert list(series.columns) == ["study_id", "series_id", "series_description"]
    assert sorted(series.groupby("study_id")["series_description"].apply(sorted).iloc[0]) == sorted(ROLES)
    assert series["series_id"].is_unique and not set(series["series_id"]) & set(train["study_id"])
    for row in series.itertuples():
        folder = root / "train_images" / row.study_id / row.series_id
        files = sorted(folder.glob("*.dcm"))
        assert files, folder
        numbers = sorted(int(f.stem) for f in files)
        assert numbers == list(range(1, len(files) + 1))
    for row in labels.itertuples():  # each label names a file of a series of the condition's role
        assert (root / "train_images" / row.study_id / row.series_id / f"{row.instance_number}.dcm").is_file()
        role = series.set_index("series_id").loc[row.series_id, "series_description"]
        assert role == CONDITION_ROLE[row.condition]

    test_series = pd.read_csv(root / "test_series_descriptions.csv", dtype={"study_id": str, "series_id": str})
    assert list(test_series.columns) == ["study_id", "series_id", "series_description"]
    (test_id,) = test_series["study_id"].unique()
    assert test_id not in set(train["study_id"])
    for row in test_series.itertuples():
        assert any((root / "test_images" / row.study_id / row.series_id).glob("*.dcm"))
    submission = pd.read_csv(root / "sample_submission.csv")
    assert list(submission.columns) == ["row_id", *SUBMISSION_COLUMNS]
    assert len(submission) == 25
    assert submission["row_id"].iloc[0] == f"{test_id}_spinal_canal_stenosis_l1_l2"
    assert np.allclose(submission[list(SUBMISSION_COLUMNS)].sum(axis=1), 1.0)

    truth = pd.read_csv(root / "synth_truth.csv", dtype={"study_id": str})
    assert list(truth.columns) == ["study_id", "split", "condition", "level", "world_x", "world_y", "world_z",
                                   "severity"]
    assert len(truth) == 4 * 25
    studies = pd.read_csv(root / "synth_studies.csv", dtype={"study_id": str})
    assert list(studies["study_id"]) == [*train["study_id"], test_id]
    assert studies["lordosis_deg"].between(40, 60).all() and set(studies["sagittal_t2_contrast"]) <= {"T2", "STIR"}
    assert set(studies["axial_stacks"]) <= {1, 5}
    assert set(truth["split"]) == {"train", "test"}
    assert set(truth["condition"]) == set(CONDITIONS) and set(truth["level"]) == set(LEVELS)
    merged = truth[truth["split"] == "train"].merge(
        train.melt(id_vars="study_id", var_name="target", value_name="grade"), on="study_id")
    merged = merged[merged["target"] == merged["condition"].str.lower().str.replace(" ", "_") + "_"
                    + merged["level"].str.lower().str.replace("/", "_")]
    assert len(merged) == 75 and (merged["severity"] == merged["grade"]).all()
    # left is +x in LPS: left points lie to the patient's left of the right ones (poses rotate < 10 degrees)
    points = truth.set_index(["study_id", "level", "condition"])["world_x"].unstack()
    for side in ("Neural Foraminal Narrowing", "Subarticular Stenosis"):
        gap = points[f"Left {side}"] - points[f"Right {side}"]
        assert (gap > 10.0).all() and (gap < 60.0).all(), gap


def test_labels_map_to_truth_points(synth_dataset: Path) -> None:
    """x, y of each label, mapped with its file's header, land on the truth point (in plane < 0.5 px,
    out of plane < half a slice step)."""
    root = synth_dataset
    labels = pd.read_csv(root / "train_label_coordinates.csv", dtype={"study_id": str, "series_id": str})
    truth = pd.read_csv(root / "synth_truth.csv", dtype={"study_id": str}).set_index(["study_id", "condition", "level"])
    for row in labels.itertuples():
        folder = root / "train_images" / row.study_id / row.series_id
        world, normal, drow, dcol = _header_world(folder / f"{row.instance_number}.dcm", row.x, row.y)
        point = truth.loc[(row.study_id, row.condition, row.level), ["world_x", "world_y", "world_z"]].to_numpy(float)
        offset = point - world
        out_of_plane = float(offset @ normal)
        in_plane = np.linalg.norm(offset - out_of_plane * normal)
        step = float(pydicom.dcmread(folder / f"{row.instance_number}.dcm", stop_before_pixels=True).SpacingBetweenSlices)
        assert in_plane < 0.5 * min(drow, dcol), (row, in_plane)
        assert abs(out_of_plane) <= 0.5 * step + 1e-3, (row, out_of_plane, step)


def test_dicom_files_are_valid_mr_images(synth_dataset: Path) -> None:
    files = sorted((synth_dataset / "train_images").rglob("*.dcm"))
    for path in files[:: max(1, len(files) // 40)]:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.StudyInstanceUID == path.parents[1].name and ds.SeriesInstanceUID == path.parent.name
        assert ds.InstanceNumber == int(path.stem)
        iop = np.array(ds.ImageOrientationPatient, float)
        assert np.allclose([iop[:3] @ iop[:3], iop[3:] @ iop[3:], iop[:3] @ iop[3:]], [1, 1, 0], atol=1e-5)
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint16 and pixels.shape == (ds.Rows, ds.Columns)
        assert float(ds.SliceThickness) < float(ds.SpacingBetweenSlices) + 1e-6
        assert ds.SeriesDescription in ROLES
        assert pixels.max() > 0


@pytest.mark.skipif(shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("dcm2niix") is None, reason="dcm2niix not installed")
def test_every_series_converts_with_dcm2niix(synth_dataset: Path, tmp_path: Path) -> None:
    binary = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which("dcm2niix")
    folders = sorted({p.parent for p in synth_dataset.rglob("*.dcm")})
    assert len(folders) == 4 * 3
    for k, folder in enumerate(folders):
        out = tmp_path / str(k)
        out.mkdir()
        done = subprocess.run([binary, "-o", str(out), "-f", "%s", str(folder)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "error" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
        assert list(out.glob("*.nii*")), f"no NIfTI written for {folder}"


def test_same_seed_same_files(tmp_path: Path) -> None:
    """Same seed, same bytes, whatever the number of worker processes; more studies keep the first ones."""
    a = generate(tmp_path / "a", 2, 11, **TINY)
    b = generate(tmp_path / "b", 3, 11, workers=2, **TINY)
    assert b.train_study_ids[:2] == a.train_study_ids
    for name in ("train.csv", "train_label_coordinates.csv", "train_series_descriptions.csv", "synth_truth.csv"):
        first = pd.read_csv(tmp_path / "a" / name, dtype=str)
        more = pd.read_csv(tmp_path / "b" / name, dtype=str)
        pd.testing.assert_frame_equal(first, more[more["study_id"].isin(a.train_study_ids)].reset_index(drop=True))
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dcm"))
    assert all((tmp_path / "b" / rel).is_file() for rel in files_a)
    for rel in files_a[::5]:
        assert pydicom.dcmread(tmp_path / "a" / rel).PixelData == pydicom.dcmread(tmp_path / "b" / rel).PixelData


def test_acquisitions_vary_across_a_batch() -> None:
    """Rotated planes, non-square pixels, rectangular matrices, reversed instance numbers, slabs and stacks."""
    options = SynthOptions()
    seen: dict[str, int] = dict.fromkeys(
        ("oblique", "non_square", "rectangular", "reversed", "slabs", "stack", "rescaled", "unit_slope", "stir"), 0)
    for i in range(24):
        rng = np.random.default_rng([3, i])
        model = sample_spine(rng, sample_severities(rng))
        for role in ROLES:
            plan = plan_series(rng, model, options, role, "1", 1)
            stack = plan.stacks[0]
            seen["oblique"] += bool(np.abs(stack.orientation).max() < 0.999)
            seen["non_square"] += abs(stack.pixel_spacing[0] - stack.pixel_spacing[1]) > 1e-3
            seen["rectangular"] += stack.rows != stack.cols
            seen["reversed"] += plan.reverse_instances
            seen["rescaled" if plan.rescale_slope != 1.0 else "unit_slope"] += 1
            seen["stir"] += plan.contrast == "STIR"
            if role == "Axial T2":
                seen["slabs" if len(plan.stacks) == 5 else "stack"] += 1
            assert 0.3 <= min(stack.pixel_spacing) and max(stack.pixel_spacing) <= 1.6
            if role != "Axial T2":
                assert 15 <= len(stack.positions) <= 20
                assert 3.0 <= stack.thickness <= 4.5 and stack.spacing > stack.thickness
    assert all(count > 0 for count in seen.values()), seen


def test_flaws_of_the_real_data(tmp_path: Path) -> None:
    root = tmp_path / "flawed"
    generate(root, 3, 5, off_by_one_fraction=1.0, extra_series_fraction=1.0, missing_series_fraction=1.0, **TINY)
    flaws = pd.read_csv(root / "synth_flaws.csv", dtype={"study_id": str})
    assert set(flaws["flaw"]) == {"off_by_one", "missing_series", "extra_series"}
    series = pd.read_csv(root / "train_series_descriptions.csv", dtype={"study_id": str, "series_id": str})
    labels = pd.read_csv(root / "train_label_coordinates.csv", dtype={"study_id": str, "series_id": str})
    truth = pd.read_csv(root / "synth_truth.csv", dtype={"study_id": str})
    for study_id, study_flaws in flaws.groupby("study_id"):
        kinds = dict(zip(study_flaws["flaw"], study_flaws["detail"], strict=True))
        descriptions = series[series["study_id"] == study_id]["series_description"].tolist()
        assert kinds["missing_series"] not in descriptions
        if "extra_series" in kinds:
            assert descriptions.count(kinds["extra_series"]) == 2
        study_labels = labels[labels["study_id"] == study_id]
        assert not set(study_labels["condition"].map(CONDITION_ROLE)) & {kinds["missing_series"]}
        assert study_labels["series_id"].isin(series["series_id"]).all()
        # spinal labels sit one level off: the label of level k maps to the truth point of level k -+ 1
        shift = int(kinds["off_by_one"].split()[0])
        spinal = study_labels[study_labels["condition"] == "Spinal Canal Stenosis"]
        study_truth = truth[(truth["study_id"] == study_id) & (truth["condition"] == "Spinal Canal Stenosis")]
        for row in spinal.itertuples():
            world, _, _, _ = _header_world(
                root / "train_images" / study_id / row.series_id / f"{row.instance_number}.dcm", row.x, row.y)
            target = LEVELS.index(row.level) - shift
            if 0 <= target < len(LEVELS):
                point = study_truth[study_truth["level"] == LEVELS[target]][["world_x", "world_y", "world_z"]]
                assert np.linalg.norm(point.to_numpy(float)[0] - world) < 5.0  # within half a slice + in plane


def test_wrong_grades_change_only_the_written_targets(tmp_path: Path) -> None:
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    generate(clean, 4, 9, **TINY)
    generate(noisy, 4, 9, grade_noise_fraction=0.3, **TINY)
    flaws = pd.read_csv(noisy / "synth_flaws.csv", dtype={"study_id": str})
    wrong = flaws[flaws["flaw"] == "wrong_grade"]
    assert 10 <= len(wrong) <= 50  # 30 % of 100 training targets
    written = pd.read_csv(noisy / "train.csv", dtype={"study_id": str}).set_index("study_id")
    true = pd.read_csv(clean / "train.csv", dtype={"study_id": str}).set_index("study_id")
    changed = {(s, t) for s in written.index for t in written.columns if written.at[s, t] != true.at[s, t]}
    listed = set()
    for row in wrong.itertuples():
        condition_level, grades = row.detail.split(": ")
        condition, level = condition_level.rsplit(" ", 1)
        was, now = grades.split(" written as ")
        target = target_name(condition, level)
        assert true.at[row.study_id, target] == was and written.at[row.study_id, target] == now != was
        listed.add((row.study_id, target))
    assert changed == listed
    # the truth, the images and the labels are those of the clean dataset
    for name in ("synth_truth.csv", "train_label_coordinates.csv"):
        assert (clean / name).read_bytes() == (noisy / name).read_bytes()


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="off_by_one_fraction"):
        SynthOptions(off_by_one_fraction=1.5)
    with pytest.raises(ConfigError, match="class_balance"):
        SynthOptions(class_balance="skewed")
    with pytest.raises(ConfigError, match="unknown synth option"):
        generate(tmp_path / "x", 1, 0, matrix_size=3)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        generate(tmp_path / "full", 1, 0)


def test_level_discs_are_the_lumbar_discs() -> None:
    assert [LEVEL_DISC[level] for level in LEVELS] == list(range(LEVEL_DISC["L1/L2"], LEVEL_DISC["L1/L2"] + 5))


def test_command_writes_dataset_and_preview(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    out, picture = tmp_path / "data", tmp_path / "study.png"
    result = CliRunner().invoke(app, ["synth", str(out), "--studies", "1", "--seed", "3", "--matrix", "48",
                                      "--preview", str(picture), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "1 train + 0 test studies" in result.output
    assert len(pd.read_csv(out / "train.csv")) == 1
    assert picture.stat().st_size > 10_000 and picture.read_bytes()[:4] == b"\x89PNG"
    again = CliRunner().invoke(app, ["synth", str(out), "--studies", "1", "--no-progress"])
    assert again.exit_code != 0


def _pixel_ratio(path: Path, x: float, y: float, reach: int = 0) -> float:
    """Largest rescaled value within ``reach`` pixels of (column x, row y), over the median of the slice's
    body pixels."""
    ds = pydicom.dcmread(path)
    image = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    body = image[image > 0.05 * image.max()]
    row, col = int(round(y)), int(round(x))
    return float(image[row - reach : row + reach + 1, col - reach : col + reach + 1].max() / np.median(body))


def test_labels_sit_on_the_right_tissue_with_the_right_contrast(synth_dataset: Path) -> None:
    """Healthy canal centres are bright on Sagittal T2 (CSF; also on STIR) and dark on Sagittal T1; healthy
    foramen centres are bright on Sagittal T1 (fat)."""
    root = synth_dataset
    labels = pd.read_csv(root / "train_label_coordinates.csv", dtype={"study_id": str, "series_id": str})
    grades = pd.read_csv(root / "train.csv", dtype=str).set_index("study_id")
    series = pd.read_csv(root / "train_series_descriptions.csv", dtype={"study_id": str, "series_id": str})
    truth = pd.read_csv(root / "synth_truth.csv", dtype={"study_id": str}).set_index(["study_id", "condition", "level"])
    checked, t1_ratios = 0, []
    for row in labels.itertuples():
        target = row.condition.lower().replace(" ", "_") + "_" + row.level.lower().replace("/", "_")
        if grades.loc[row.study_id, target] != "Normal/Mild" or "Subarticular" in row.condition:
            continue
        folder = root / "train_images" / row.study_id / row.series_id
        # within one pixel: at these coarse test pixels (2-2.5 mm) blur and partial volume dim the centre
        assert _pixel_ratio(folder / f"{row.instance_number}.dcm", row.x, row.y, reach=1) > 1.3, row
        checked += 1
        if row.condition != "Spinal Canal Stenosis":
            continue
        # the same canal point seen on Sagittal T1: CSF is dark there
        t1_id = series[(series["study_id"] == row.study_id) & (series["series_description"] == "Sagittal T1")]
        t1_folder = root / "train_images" / row.study_id / t1_id["series_id"].iloc[0]
        point = truth.loc[(row.study_id, row.condition, row.level), ["world_x", "world_y", "world_z"]].to_numpy(float)
        nearest = min(t1_folder.glob("*.dcm"), key=lambda p: abs(
            (point - np.array(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient, float))
            @ _header_world(p, 0, 0)[1]))
        ds = pydicom.dcmread(nearest, stop_before_pixels=True)
        ipp, iop = np.array(ds.ImagePositionPatient, float), np.array(ds.ImageOrientationPatient, float)
        drow, dcol = (float(v) for v in ds.PixelSpacing)
        x, y = (point - ipp) @ iop[:3] / dcol, (point - ipp) @ iop[3:] / drow
        t1_ratios.append(_pixel_ratio(nearest, x, y))
    assert checked >= 30
    # partial volume with roots and epidural fat lifts single pixels; CSF stays darker than the body overall
    assert len(t1_ratios) >= 10 and max(t1_ratios) < 1.0 and np.median(t1_ratios) < 0.7, t1_ratios
