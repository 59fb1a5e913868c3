"""``spine train``, ``spine locate`` and ``spine audit`` end to end on the synthetic fixture store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import spinedata as sd
from cli.app import app
from spinemodels.inference.locate import COORD_COLUMNS
from tests.helpers.cli_helpers import cli_error
from tests.helpers.spinemodels_fakes import one_torch_thread  # noqa: F401
from tests.helpers.tiny_runs import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def store(synth_store):
    return synth_store


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    paths = {}
    for name, raw in TINY.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(raw))
    return paths


@pytest.fixture(scope="module")
def runs(store, configs, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, path in configs.items():
        out[name] = root / name
        result = runner.invoke(app, ["train", str(path), "--data", str(store), "--out", str(out[name]),
                                     "--set", "train.epochs=1", "--set", "train.folds=[0, 1]", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert f"{name}: trained folds [0, 1]" in result.stdout
    return out


def test_locate_and_audit_from_the_command_line(store, runs, tmp_path):
    coords_path = tmp_path / "coords.csv"
    result = runner.invoke(app, ["locate", str(store), "--model", str(runs["slice_finder"]), "--model",
                                 str(runs["keypoints"]), "--out", str(coords_path), "--no-progress", "--oof"])
    assert result.exit_code == 0, result.output
    coords = pd.read_csv(coords_path, dtype={"study_id": str, "series_id": str})
    ds = sd.open_dataset(store)
    n_warned = int((coords["warning"].fillna("") != "").sum())
    assert f"summary: {len(ds.study_ids)} of {len(ds.study_ids)} studies located; 0 without points" in result.stdout
    assert f"summary: {n_warned} of {len(coords)} points carry a warning" in result.stdout
    assert list(coords.columns) == COORD_COLUMNS and len(coords) == 25 * len(ds.study_ids)
    for row in coords.itertuples():
        stack = ds.study(row.study_id).series[row.series_id].stacks[row.stack]
        assert stack.instance_numbers[row.slice] == row.instance_number
        on_plane = stack.voxel_to_world([row.slice, row.y, row.x])
        offset = np.array([row.world_x, row.world_y, row.world_z]) - on_plane
        assert np.linalg.norm(offset) == pytest.approx(abs(row.plane_distance_mm), abs=1e-4)
    plain_path = tmp_path / "plain.csv"
    result = runner.invoke(app, ["locate", str(store), "--model", str(runs["slice_finder"]), "--model",
                                 str(runs["keypoints"]), "--out", str(plain_path), "--no-progress", "--oof",
                                 "--no-refine"])  # fmt: skip
    assert result.exit_code == 0, result.output
    plain = pd.read_csv(plain_path, dtype={"study_id": str, "series_id": str})
    spinal = plain[plain["condition"] == "Spinal Canal Stenosis"]
    assert len(spinal) == 5 * len(ds.study_ids) and (spinal["plane_distance_mm"] == 0).all()  # on a slice
    findings, fixed = tmp_path / "findings.csv", tmp_path / "fixed.csv"
    result = runner.invoke(app, ["audit", str(store), "--coords", str(coords_path), "--out", str(findings),
                                 "--corrected", str(fixed)])
    assert result.exit_code == 0, result.output
    assert findings.is_file()
    corrected = pd.read_csv(fixed, dtype={"study_id": str})
    assert list(corrected.columns) == ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    assert len(corrected) <= len(ds.labels)


def test_a_wrong_config_key_is_one_line_error(store, configs, tmp_path, monkeypatch, capsys):
    err = cli_error(monkeypatch, capsys, ["train", str(configs["keypoints"]), "--data", str(store),
                                      "--out", str(tmp_path / "run"), "--set", "optim.learning_rate=1"])
    assert err.startswith("error: ") and "unknown key optim.learning_rate; valid keys of optim" in err


def test_resume_from_a_planted_last_pt_is_one_line_error(store, configs, tmp_path, monkeypatch, capsys):
    from tests.spinemodels.test_training import plant

    marker = tmp_path / "planted_ran"
    plant(tmp_path / "run" / "fold_0" / "last.pt", marker)
    err = cli_error(monkeypatch, capsys, ["train", str(configs["slice_finder"]), "--data", str(store),
                                      "--out", str(tmp_path / "run"), "--resume", "--no-progress"])
    assert err.startswith("error: refused to load ") and "last.pt" in err and "\n" not in err
    assert not marker.exists()


def test_a_run_that_cannot_fit_memory_is_one_line_error(store, configs, tmp_path, monkeypatch, capsys):
    from spinemodels import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)
    err = cli_error(monkeypatch, capsys, ["train", str(configs["keypoints"]), "--data", str(store),
                                      "--out", str(tmp_path / "run"), "--no-progress"])
    assert err.startswith("error: a training step of keypoints needs about ") and "\n" not in err
    assert err.endswith("or skip this estimate with --set train.memory_check=false")


@pytest.mark.parametrize(("override", "message"), [
    ("train.num_workers=-3", "train.num_workers: must be at least 0, got -3"),
    ("optim.lr=0", "optim.lr: must be above 0, got 0.0"),
    ("train.folds=[0, -1]", "train.folds: must be at least 0, got -1"),
])  # fmt: skip
def test_an_out_of_range_value_is_one_line_error(store, configs, tmp_path, monkeypatch, capsys, override, message):
    err = cli_error(monkeypatch, capsys, ["train", str(configs["keypoints"]), "--data", str(store),
                                          "--out", str(tmp_path / "run"), "--set", override])  # fmt: skip
    assert err.startswith("error: ") and err.endswith(message) and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_out_naming_an_existing_file_or_folder_is_one_line_error(store, configs, tmp_path, monkeypatch, capsys):
    planted = tmp_path / "a_file"
    planted.write_text("keep me")
    err = cli_error(monkeypatch, capsys, ["train", str(configs["keypoints"]), "--data", str(store),
                                          "--out", str(planted)])  # fmt: skip
    assert err == f"error: --out {planted} is a file, not a folder; name a new folder or a run directory"
    err = cli_error(monkeypatch, capsys, ["locate", str(store), "--model", str(tmp_path), "--out", str(tmp_path)])
    assert err == f"error: --out {tmp_path} is a folder; name the file to write"
    err = cli_error(monkeypatch, capsys, ["show", str(store), "1", "--out", str(planted / "x.png")])
    assert err == f"error: --out {planted / 'x.png'}: {planted} is a file, not a folder"
    assert planted.read_text() == "keep me"


def test_a_run_whose_config_is_an_alias_bomb_is_one_line_error(store, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    (run / "config.yaml").write_text("\n".join(levels) + "\n")  # ~850 bytes, 9^9 strings if expanded
    err = cli_error(monkeypatch, capsys, ["locate", str(store), "--model", str(run), "--out", str(tmp_path / "c.csv")])
    assert err == f"error: {run / 'config.yaml'}: more than 16 YAML aliases (*name); write the values out instead"
