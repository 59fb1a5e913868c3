"""`spine ingest` / `spinedata.ingest`: layouts, bad input, resumability, labels, targets, exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import zarr
from pydicom.uid import generate_uid
from typer.testing import CliRunner

import spinedata as sd
from cli.app import app
from spinedata.constants import TARGETS
from spinedata.dicom import read_header, read_stack
from spinedata.errors import DataLayoutError, OutputPathError
from spinedata.ingest import check_report_path, ingest
from spinedata.report import read_report
from spinedata.store.layout import STAGING
from spinedata.store.writer import StudyWriter
from tests.helpers.cli_helpers import cli_error
from tests.helpers.dicom_writer import write_enhanced
from tests.helpers.ingest_data import write_competition_dataset, write_competition_series

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dataset(tmp_path):
    data = tmp_path / "data"
    return data, write_competition_dataset(data)


def reasons(result) -> list[tuple[str, str, str, str]]:
    return [(Path(s.path).name, s.study_id, s.series_id, s.reason) for s in result.skipped]


def check_study(ds, truth, study_id):
    for (sid, series_id), t in truth.items():
        if sid != study_id:
            continue
        (stack,) = ds.study(sid).series[series_id].stacks
        np.testing.assert_array_equal(stack.read(), t.volume)
        np.testing.assert_allclose(stack.affine, t.affine, atol=1e-5)
        np.testing.assert_array_equal(stack.instance_numbers, t.instance_numbers)


def test_competition_layout_round_trip(dataset, tmp_path):
    data, truth = dataset
    result = ingest(data, tmp_path / "out.zarr", workers=1)
    assert (result.n_studies, result.n_written, result.n_complete) == (2, 2, 2)
    assert result.skipped == [] and result.report.read_text().strip() == "path,study_id,series_id,reason"
    assert not (tmp_path / "out.zarr" / STAGING).exists()
    ds = sd.open_dataset(tmp_path / "out.zarr")
    assert ds.study_ids == ["1001", "1002"]
    for study_id in ds.study_ids:
        check_study(ds, truth, study_id)
        roles = {s.series_id: s.role for s in ds.study(study_id).series.values()}
        assert roles == {f"{study_id}1": "Sagittal T2/STIR", f"{study_id}2": "Axial T2"}
    labels = ds.labels
    assert list(labels.columns) == [
        "study_id", "series_id", "instance_number", "condition", "level", "x", "y",
        "stack", "slice", "world_x", "world_y", "world_z",
    ]  # fmt: skip
    for row in labels.itertuples():
        t = truth[(row.study_id, row.series_id)]
        k = int(np.flatnonzero(t.instance_numbers == row.instance_number)[0])
        assert (row.stack, row.slice) == (0, k)
        expected = t.affine[:3, :3] @ [k, row.y, row.x] + t.affine[:3, 3]  # x = column, y = row
        np.testing.assert_allclose([row.world_x, row.world_y, row.world_z], expected, atol=1e-4)
    targets = ds.targets.set_index("study_id")
    assert list(targets.columns) == list(TARGETS)
    assert targets.loc["1001", "spinal_canal_stenosis_l1_l2"] == 1
    assert targets.loc["1001", TARGETS[1]] == 0 and targets.loc["1002", TARGETS[-1]] == -1


def test_rescaled_series_are_stored_as_integers_and_read_back_bit_for_bit(tmp_path):
    data = tmp_path / "data"
    write_competition_dataset(data, study_ids=("7",))
    folder = data / "train_images" / "7" / "73"
    write_competition_series(folder, study_uid=generate_uid(), n_slices=5, rescale=(3.6668, -0.21))
    with open(data / "train_series_descriptions.csv", "a") as handle:
        handle.write("7,73,Sagittal T1\n")
    assert ingest(data, tmp_path / "out.zarr", workers=1).skipped == []
    (stack,) = sd.open_dataset(tmp_path / "out.zarr").study("7").series["73"].stacks
    raw = zarr.open_array(tmp_path / "out.zarr" / stack.path / "image", mode="r")
    assert raw.dtype == np.uint16
    assert (raw.attrs["scale_factor"], raw.attrs["add_offset"]) == (3.6668, -0.21)
    headers = sorted((read_header(p) for p in folder.iterdir()), key=lambda h: -h.instance_number)
    expected = read_stack(headers)  # what spinedata.dicom reads: float32 rescaled values
    assert expected.dtype == np.float32
    assert stack.read().dtype == np.float32 and np.array_equal(stack.read(), expected)
    np.testing.assert_allclose(stack.image.values, expected, rtol=1e-6)  # xarray applies the CF attributes


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def test_bad_input_is_reported_and_the_rest_ingested(dataset, tmp_path):
    data, truth = dataset
    images = data / "train_images"
    sag = images / "1001" / "10011"
    (sag / "notes.txt").write_text("not dicom")
    _truncate(sag / "1.dcm", len((sag / "1.dcm").read_bytes()) - 100)  # pixel data cut short
    no_geometry = pydicom.dcmread(sag / "2.dcm")
    del no_geometry.ImagePositionPatient
    no_geometry.save_as(sag / "2.dcm")
    # a second matrix inside the axial series of study 1002 (same SeriesInstanceUID)
    axial = images / "1002" / "10022"
    uid = pydicom.dcmread(axial / "1.dcm").SeriesInstanceUID
    other = write_competition_series(tmp_path / "tmp", study_uid="1", n_slices=2, rows=12, cols=10,
                                     angles_deg=(0, 0, 0), origin=(0, 0, 80))  # fmt: skip
    for k, path in enumerate(other.paths):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = uid
        ds.InstanceNumber = 50 + k
        ds.save_as(axial / f"{50 + k}.dcm")
    # a folder without a CSV row, a CSV row without files, a stray file
    write_competition_series(images / "1002" / "777", study_uid="1", n_slices=3, description="SAG T1")
    with open(data / "train_series_descriptions.csv", "a") as handle:
        handle.write("1002,888,Sagittal T1\n1003,999,Axial T2\n")
    (images / "stray.dcm").write_text("x")
    with open(data / "train_label_coordinates.csv", "a") as handle:
        handle.write("1001,10011,1,Spinal Canal Stenosis,L2/L3,3,4\n")  # its file is truncated
        handle.write("1001,10011,3,Spinal Canal Stenosis,L9/L9,3,4\n")  # unknown level

    result = ingest(data, tmp_path / "out.zarr", workers=1)
    lines = reasons(result)
    by_file = {(name, reason.split(" (")[0].split(":")[0]) for name, _, _, reason in lines}
    assert ("notes.txt", "not a DICOM file") in by_file
    assert ("1.dcm", "truncated pixel data") in by_file
    assert ("2.dcm", "no ImagePositionPatient") in by_file
    assert ("stray.dcm", "not inside a <study_id>/<series_id>/ folder") in by_file
    assert ("999", "CSV row without files") in by_file and ("888", "CSV row without files") in by_file
    assert ("777", "folder without a row in train_series_descriptions.csv") in by_file
    assert any(r.startswith("series with mixed matrices (12x10, 16x16)") and s == "10022" for _, _, s, r in lines)
    assert any(r.startswith("label not resolvable: instance 1 not in any stack") for *_, r in lines)
    assert any(r.startswith("label row left out: unknown level") for *_, r in lines)
    assert read_report(result.report) == result.skipped
    # everything else is ingested
    ds = sd.open_dataset(tmp_path / "out.zarr")
    assert ds.study_ids == ["1001", "1002"]
    check_study(ds, {k: v for k, v in truth.items() if k[1] != "10011" and k[1] != "10022"}, "1001")
    (sag_stack,) = ds.study("1001").series["10011"].stacks
    t = truth[("1001", "10011")]
    kept = ~np.isin(t.instance_numbers, [1, 2])
    np.testing.assert_array_equal(sag_stack.read(), t.volume[kept])
    np.testing.assert_array_equal(sag_stack.instance_numbers, t.instance_numbers[kept])
    axial_stacks = ds.study("1002").series["10022"].stacks
    assert sorted(s.shape for s in axial_stacks) == [(2, 12, 10), (4, 16, 16)]
    extra = ds.study("1002").series["777"]
    assert (extra.description, extra.role) == ("SAG T1", "Sagittal T1")
    assert any("3 of 7 images left out" in w for w in ds.study("1001").warnings)
    labels = ds.labels
    assert len(labels) == 3 and (labels["stack"] == -1).sum() == 2  # instances 1 and 2 of 1001 are gone
    assert labels.loc[labels["stack"] == -1, ["world_x", "world_y", "world_z"]].isna().all(axis=None)


def test_ids_that_would_leave_the_store_are_report_lines(dataset, tmp_path):
    """Ids from the three CSVs and from folder names that are not one plain path component are left out
    with a report line; nothing of them reaches the store."""
    data, _ = dataset
    with open(data / "train_series_descriptions.csv", "a") as handle:
        handle.write("../1001,10011,Sagittal T2/STIR\n1002,/etc,Axial T2\n")
    with open(data / "train_label_coordinates.csv", "a") as handle:
        handle.write("..,10011,2,Spinal Canal Stenosis,L2/L3,3,4\n1001,../../x,2,Spinal Canal Stenosis,L2/L3,3,4\n")
    with open(data / "train.csv", "a") as handle:
        handle.write(",".join(("../../x", *["Normal/Mild"] * len(TARGETS))) + "\n")
    write_competition_series(data / "train_images" / "1002" / "a\\b", study_uid="1", n_slices=2)
    result = ingest(data, tmp_path / "out.zarr", workers=1)
    left_out = {(name, study, series, reason.split(":")[0]) for name, study, series, reason in reasons(result)
                if "cannot name a store entry" in reason}  # fmt: skip
    assert left_out == {
        ("train_series_descriptions.csv", "../1001", "10011", "series row left out"),
        ("train_series_descriptions.csv", "1002", "/etc", "series row left out"),
        ("train_label_coordinates.csv", "..", "10011", "label row left out"),
        ("train_label_coordinates.csv", "1001", "../../x", "label row left out"),
        ("train.csv", "../../x", "", "target row left out"),
        ("a\\b", "1002", "a\\b", "series id 'a\\\\b' cannot name a store entry"),
    }
    assert not any(line.study_id.startswith((".", "/")) or line.series_id.startswith((".", "/"))
                   for line in result.skipped if "cannot name a store entry" not in line.reason)  # fmt: skip
    ds = sd.open_dataset(tmp_path / "out.zarr")
    assert ds.study_ids == ["1001", "1002"] and sorted(ds.study("1002").series) == ["10021", "10022"]
    assert sorted(ds.targets["study_id"]) == ["1001", "1002"]
    assert sorted(ds.labels["study_id"]) == ["1001", "1002"] and (ds.labels["stack"] >= 0).all()


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_dicom_uids_that_would_leave_the_store_are_report_lines(tmp_path):
    folder = tmp_path / "dump"
    t = write_competition_series(folder, study_uid=generate_uid(), n_slices=3)
    bad = pydicom.dcmread(t.paths[0])
    bad.StudyInstanceUID = "../../x"
    bad.save_as(t.paths[0])
    result = ingest(folder, tmp_path / "out.zarr", workers=1)
    assert [(name, study, r.split(":")[0]) for name, study, _, r in reasons(result)] == [
        (t.paths[0].name, "../../x", "StudyInstanceUID '../../x' cannot name a store entry")
    ]
    assert result.n_complete == 1 and not (tmp_path / "x").exists()


def test_resume_after_interruption(dataset, tmp_path):
    data, truth = dataset
    out = tmp_path / "out.zarr"
    (data / "train_images" / "1001" / "10011" / "junk.bin").write_text("x")
    first = ingest(data, out, workers=1)
    assert len(first.skipped) == 1
    # simulate a run killed mid-way: study 1002 half-written in staging, and one without `complete`
    shutil.rmtree(out / "studies" / "1002")
    StudyWriter(out, "1002").add_series("x", description="", role=None, series_uid="")
    half = out / "studies" / "1002"
    shutil.copytree(out / "studies" / "1001", half)
    (half / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {"complete": false}}')
    shutil.rmtree(out / "labels")
    assert sd.open_dataset(out).study_ids == ["1001"]

    second = ingest(data, out, workers=1)
    assert (second.n_written, second.n_already, second.n_complete) == (1, 1, 2)
    assert sorted(second.removed_stale)[-1] == "studies/1002" and len(second.removed_stale) == 2
    assert reasons(second) == reasons(first)  # lines of the study written earlier are reported again
    ds = sd.open_dataset(out)
    for study_id in ("1001", "1002"):
        check_study(ds, truth, study_id)
    assert len(ds.labels) == 2 and not (out / STAGING).exists()  # a finished ingest leaves no .staging/


def test_resume_after_kill_9(tmp_path):
    data = tmp_path / "data"
    truth = write_competition_dataset(data, study_ids=tuple(str(2000 + i) for i in range(8)))
    out = tmp_path / "out.zarr"
    command = [sys.executable, "-m", "cli.app", "ingest", str(data), str(out), "--workers", "2", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    def a_study_written() -> bool:
        return (out / "studies").is_dir() and any((out / "studies").iterdir())

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and not a_study_written():
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the parent and its workers
    process.wait()
    visible = sd.open_dataset(out).study_ids
    for study_id in visible:  # whatever is visible is whole
        check_study(sd.open_dataset(out), truth, study_id)
    result = ingest(data, out, workers=2)
    assert result.n_complete == 8 and result.skipped == []
    ds = sd.open_dataset(out)
    for study_id in ds.study_ids:
        check_study(ds, truth, study_id)


def _die_on_1001(store_root, job, *args):
    """Stands in for ``ingest_study`` in a worker: the process dies on study 1001 (as if killed for memory)."""
    from spinedata.ingest.worker import ingest_study

    if job.study_id == "1001":
        os._exit(3)
    return ingest_study(store_root, job, *args)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the patched worker reaches the pool by fork")
def test_a_dying_worker_is_reported_and_a_rerun_finishes(dataset, tmp_path, monkeypatch):
    data, truth = dataset
    out = tmp_path / "out.zarr"
    monkeypatch.setattr("spinedata.ingest.pool.ingest_study", _die_on_1001)
    first = ingest(data, out, workers=2)
    died = [s.study_id for s in first.skipped if s.reason.startswith("worker process died")]
    assert died == ["1001"] and sd.open_dataset(out).study_ids == ["1002"]  # the other study is written
    assert first.report.is_file() and len(sd.open_dataset(out).labels) == 2  # the run completed
    monkeypatch.undo()
    second = ingest(data, out, workers=2)
    assert second.n_complete == 2 and second.skipped == []
    check_study(sd.open_dataset(out), truth, "1001")


def test_plain_folder_without_csvs(tmp_path):
    folder = tmp_path / "dump"
    folder.mkdir()
    uids = [generate_uid(), generate_uid()]
    truth = {}
    for i, (description, uid) in enumerate((("SAG T2 FSE", uids[0]), ("t1_tse_sag", uids[1]), ("localizer", uids[1]))):
        t = write_competition_series(tmp_path / f"s{i}", study_uid=uid, seed=i, description=description)
        for path in t.paths:  # all files in one folder, with meaningless names
            shutil.move(path, folder / f"{i}_{path.name}")
        truth[description] = (uid, t)
    (folder / "README").write_text("not dicom")
    result = ingest(folder, tmp_path / "out.zarr", workers=2)
    assert result.layout == "plain" and result.n_complete == 2
    assert [(name, r.split(" (")[0]) for name, _, _, r in reasons(result)] == [("README", "not a DICOM file")]
    ds = sd.open_dataset(tmp_path / "out.zarr")
    assert sorted(ds.study_ids) == sorted(uids)
    for description, (uid, t) in truth.items():
        (series,) = [s for s in ds.study(uid).series.values() if s.description == description]
        assert series.series_id == series.series_instance_uid
        assert series.role == {"SAG T2 FSE": "Sagittal T2/STIR", "t1_tse_sag": "Sagittal T1"}.get(description)
        np.testing.assert_array_equal(series.stacks[0].read(), t.volume)
    assert len(ds.labels) == 0 and len(ds.targets) == 0


def test_multiframe_files_are_ingested(dataset, tmp_path):
    """A series stored as one Enhanced MR file (frames in a shuffled order), in the competition layout and
    in a plain folder: the same stack as its single-frame files, instance numbers = frame numbers, labels
    resolved against them, nothing reported."""
    data, truth = dataset
    t = truth[("1001", "10011")]
    order = [2, 5, 0, 3, 1, 4]
    folder = data / "train_images" / "1001" / "10011"
    write_enhanced(t.paths, tmp_path / "multiframe.dcm", frame_order=order)
    for path in t.paths:
        path.unlink()
    shutil.copy(tmp_path / "multiframe.dcm", folder / "1.dcm")
    for layout, source in (("competition", data), ("plain", folder)):
        result = ingest(source, tmp_path / f"{layout}.zarr", workers=1)
        assert result.layout == layout and result.skipped == [] and result.n_complete >= 1
        ds = sd.open_dataset(tmp_path / f"{layout}.zarr")
        study = ds.study("1001") if layout == "competition" else ds.study(ds.study_ids[0])
        (series,) = [s for s in study.series.values() if len(s.stacks[0].instance_numbers) == 6]
        (stack,) = series.stacks
        np.testing.assert_array_equal(stack.read(), t.volume)
        np.testing.assert_allclose(stack.affine, t.affine, atol=1e-5)
        np.testing.assert_array_equal(stack.instance_numbers, [order.index(k) + 1 for k in range(6)])
    labels = sd.open_dataset(tmp_path / "competition.zarr").labels.set_index("series_id")
    row = labels.loc["10011"]  # the CSV's instance number 2 is frame 2, the slice order[1] along n
    assert (row["stack"], row["slice"]) == (0, order[1])


def test_an_input_folder_without_files_is_one_error_and_no_store(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match="holds no files"):
        ingest(tmp_path / "empty", tmp_path / "out.zarr", workers=1)
    assert not (tmp_path / "out.zarr").exists()
    err = cli_error(monkeypatch, capsys, ["ingest", str(tmp_path / "empty"), str(tmp_path / "out.zarr")])
    assert err.startswith("error: input folder") and "holds no files" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()


def test_test_split_has_no_labels(tmp_path):
    data = tmp_path / "data"
    write_competition_dataset(data, study_ids=("5",), split="test")
    result = ingest(data, tmp_path / "out.zarr", split="test", workers=1)
    assert result.n_complete == 1 and result.skipped == []
    ds = sd.open_dataset(tmp_path / "out.zarr")
    assert ds.split == "test" and len(ds.labels) == 0 and list(ds.targets.columns) == ["study_id", *TARGETS]
    with pytest.raises(DataLayoutError, match="--split"):
        ingest(data, tmp_path / "other.zarr", split="train")


def test_an_unreadable_label_csv_fails_after_every_study_is_written(tmp_path):
    """The parent reads the CSVs while the workers ingest: a broken one still lets every study finish (more
    studies than the pool takes at once, so that some are still queued when the error comes)."""
    data = tmp_path / "data"
    study_ids = tuple(str(2001 + k) for k in range(6))
    truth = write_competition_dataset(data, study_ids=study_ids)
    (data / "train_label_coordinates.csv").write_text("study_id,series_id\n2001,20011\n")
    with pytest.raises(DataLayoutError, match="lacks the column"):
        ingest(data, tmp_path / "out.zarr", workers=2)
    ds = sd.open_dataset(tmp_path / "out.zarr")
    assert ds.study_ids == list(study_ids)
    for study_id in ds.study_ids:
        check_study(ds, truth, study_id)
    assert not list((tmp_path / "out.zarr" / STAGING).iterdir())


def test_workers_forked_after_the_parents_blosc_pool_ran_write_correct_studies(dataset, tmp_path):
    """C-Blosc notices a fork and starts its threads afresh in the child: workers forked from a parent whose
    Blosc pool has run (on two threads) compress correctly."""
    import blosc

    data, truth = dataset
    previous = blosc.set_nthreads(2)
    try:
        blosc.compress(np.arange(1 << 16, dtype=np.uint16).tobytes(), typesize=2)  # the pool has run
        assert ingest(data, tmp_path / "out.zarr", workers=2).n_complete == 2
    finally:
        blosc.set_nthreads(previous)
    ds = sd.open_dataset(tmp_path / "out.zarr")
    for study_id in ds.study_ids:
        check_study(ds, truth, study_id)


def test_the_workers_have_exited_and_their_cpu_is_counted_when_ingest_returns(dataset, tmp_path):
    import multiprocessing
    import resource

    data, _ = dataset
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert ingest(data, tmp_path / "out.zarr", workers=2).n_complete == 2
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert multiprocessing.active_children() == []
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) > 0  # the workers' CPU


def test_the_command_line_builds_only_the_command_it_runs(dataset, tmp_path):
    from cli.app import build_app
    from cli.commands import COMMANDS, requested

    assert requested(["ingest", "a", "b"]) == ("ingest",)
    assert requested([]) == requested(["--help"]) == requested(["nope"]) == requested(["a", "ingest"]) == COMMANDS
    only = build_app(("info",))
    assert [c.name for c in only.registered_commands] == ["info"]
    assert [c.name for c in app.registered_commands] == list(COMMANDS)
    data, _ = dataset
    command = [sys.executable, "-m", "cli.app", "ingest", str(data), str(tmp_path / "o.zarr"), "--workers", "1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and "2 studies written" in done.stdout, done.stderr
    unknown = subprocess.run([sys.executable, "-m", "cli.app", "nope"], capture_output=True, text=True, cwd=REPO,
                             timeout=60)  # fmt: skip
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
    listed = subprocess.run([sys.executable, "-m", "cli.app", "--help"], capture_output=True, text=True, cwd=REPO,
                            timeout=60)  # fmt: skip
    assert listed.returncode == 0 and all(name in listed.stdout for name in COMMANDS)


def test_cli_exit_codes_and_info(dataset, tmp_path):
    data, _ = dataset
    runner = CliRunner()
    out = tmp_path / "out.zarr"
    result = runner.invoke(app, ["ingest", str(data), str(out), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 studies written" in result.output
    (data / "train_images" / "1001" / "10011" / "junk.bin").write_text("x")
    shutil.rmtree(out / "studies" / "1001")
    strict = runner.invoke(app, ["ingest", str(data), str(out), "--workers", "1", "--strict", "--no-progress"])
    assert strict.exit_code == 1 and "--strict" in strict.output
    report = tmp_path / "r.csv"
    relaxed = runner.invoke(app, ["ingest", str(data), str(out), "--workers", "1", "--report", str(report)])
    assert relaxed.exit_code == 0 and [s.path for s in read_report(report)][0].endswith("junk.bin")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.dcm").write_text("x")
    nothing = runner.invoke(app, ["ingest", str(junk), str(tmp_path / "none.zarr"), "--workers", "1"])
    assert nothing.exit_code == 1 and "nothing could be ingested" in nothing.output

    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "2 complete studies" in info.output and "1001" in info.output and "labels: 2 points" in info.output
    detail = runner.invoke(app, ["info", str(out), "1001"])
    assert detail.exit_code == 0
    assert "6x20x24" in detail.output and "0.6 x 0.9 x 4" in detail.output and "sagittal" in detail.output
    assert "4x16x16" in detail.output and "axial" in detail.output


def _spine(argv, monkeypatch, capsys) -> tuple[int, str]:
    """Run ``spine ARGV`` as the console script does: (exit code, stderr)."""
    from cli.errors import run_app

    monkeypatch.setattr(sys, "argv", ["spine", *argv])
    monkeypatch.delenv("SPINE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_app(app)
    return info.value.code, capsys.readouterr().err.strip()


REPORT_REFUSALS = {
    "an input CSV": ("{data}/train_label_coordinates.csv", "lies inside the input folder"),
    "a new file in the input folder": ("{data}/train_images/r.csv", "lies inside the input folder"),
    "the store's root metadata": ("{out}/zarr.json", "lies inside the store"),
    "a new file in the store": ("{out}/studies/r.csv", "lies inside the store"),
    "a folder": ("{tmp}/folder", "is a folder"),
    "a file that is not a report": ("{tmp}/notes.txt", "exists and is not an ingest report"),
    "an input CSV linked from the input folder": ("{tmp}/elsewhere/train.csv", "exists and is not an ingest report"),
    "a path below a file": ("{tmp}/notes.txt/r.csv", "is a file, not a folder"),
}


@pytest.mark.parametrize("case", REPORT_REFUSALS)
def test_a_report_path_that_would_destroy_data_is_refused_before_any_work(dataset, tmp_path, monkeypatch,
                                                                          capsys, case):  # fmt: skip
    data, _ = dataset
    out = tmp_path / "out.zarr"
    assert ingest(data, out, workers=1).n_complete == 2  # an existing store, to resume
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("keep me\n")
    (tmp_path / "elsewhere").mkdir()
    shutil.move(data / "train.csv", tmp_path / "elsewhere" / "train.csv")
    (data / "train.csv").symlink_to(tmp_path / "elsewhere" / "train.csv")
    shutil.rmtree(out / "studies" / "1002")  # work a resumed run would do
    files = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    before = {path: path.read_bytes() for path in files}
    template, message = REPORT_REFUSALS[case]
    report = template.format(data=data, out=out, tmp=tmp_path)
    code, err = _spine(["ingest", str(data), str(out), "--workers", "1", "--report", report], monkeypatch, capsys)
    assert code == 1 and err.startswith(f"error: --report {report!r} ") and message in err and "\n" not in err
    with pytest.raises(OutputPathError, match=message):  # the library refuses it as well
        ingest(data, out, workers=1, report=report)
    assert sorted(path for path in tmp_path.rglob("*") if path.is_file()) == files  # nothing written
    assert {path: path.read_bytes() for path in files} == before  # nothing overwritten
    assert sd.open_dataset(out).study_ids == ["1001"]  # nothing ingested: refused before any work


def test_a_report_may_replace_an_earlier_report_or_go_to_its_default_place(dataset, tmp_path, monkeypatch, capsys):
    data, _ = dataset
    out = tmp_path / "out.zarr"
    report = tmp_path / "reports" / "r.csv"
    assert ingest(data, out, workers=1, report=report).report == report  # a new folder is created
    (data / "train_images" / "stray.dcm").write_text("x")
    code, _ = _spine(["ingest", str(data), str(out), "--workers", "1", "--report", str(report)], monkeypatch, capsys)
    assert code == 0 and [Path(s.path).name for s in read_report(report)] == ["stray.dcm"]  # replaced
    default = out / "ingest_report.csv"
    assert ingest(data, out, workers=1, report=default).report == default and len(read_report(default)) == 1
    assert check_report_path(data, out, None) == default


def test_cli_shows_a_progress_bar_on_a_terminal(dataset, tmp_path, monkeypatch, capsys):
    """On a terminal the command draws rich's bar (stages named); elsewhere (the tests above) it prints none."""
    import io

    from cli.cmd_ingest import ingest as ingest_command

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    data, _ = dataset
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    ingest_command(data, tmp_path / "bar.zarr", workers=1)
    assert "ingesting studies" in terminal.getvalue() and "2/2" in terminal.getvalue()
    assert "2 studies written" in capsys.readouterr().out
    assert sd.open_dataset(tmp_path / "bar.zarr").study_ids == ["1001", "1002"]
