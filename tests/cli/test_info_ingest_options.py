"""``spine info --json`` and ``spine ingest --split`` as a choice."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.cmd_ingest import Split
from spinedata.ingest import ingest
from spinedata.ingest.discover import SPLITS

runner = CliRunner()


def test_info_json_is_one_document_of_the_store_and_of_a_study(synth_dataset, tmp_path):
    store = tmp_path / "train.zarr"
    ingest(synth_dataset, store, workers=1)
    result = runner.invoke(app, ["info", str(store), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["attrs"]["split"] == "train" and document["checksums"] is True and document["damage"] == {}
    assert len(document["studies"]) == 3 and document["labels"] == sum(s["labels"] for s in document["studies"])
    study = document["studies"][0]["study_id"]
    result = runner.invoke(app, ["info", str(store), study, "--json"])
    assert result.exit_code == 0, result.output
    stacks = json.loads(result.stdout)["stacks"]
    assert stacks and {"series_id", "role", "stack", "shape", "flags", "labels"} <= set(stacks[0])


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_info_json_numbers_are_numbers_and_booleans_booleans(synth_store):
    document = json.loads(runner.invoke(app, ["info", str(synth_store), "--json"]).stdout)
    assert document["checksums"] is True and is_number(document["attrs"]["spinedata_format"])
    assert is_number(document["labels"]) and is_number(document["targets"])
    for study in document["studies"]:
        assert isinstance(study["study_id"], str)
        assert all(is_number(value) for key, value in study.items() if key != "study_id"), study
    stacks = json.loads(runner.invoke(app, ["info", str(synth_store), study["study_id"], "--json"]).stdout)["stacks"]
    from spinedata.store import open_dataset

    geometries = [s.geometry for series in open_dataset(synth_store).study(study["study_id"]).series.values()
                  for s in series.stacks]  # fmt: skip
    for record, geometry in zip(stacks, geometries, strict=True):
        assert is_number(record["stack"]) and is_number(record["labels"])
        assert record["shape"] == list(geometry.shape)
        assert record["spacing mm"] == [*geometry.pixel_spacing, geometry.slice_spacing]  # full precision
        assert record["orientation (IOP)"] == list(geometry.orientation)
        assert isinstance(record["flags"], list) and (record["role"] is None or isinstance(record["role"], str))


def test_split_is_a_choice_of_the_layouts_splits(synth_dataset, tmp_path):
    assert tuple(s.value for s in Split) == SPLITS
    result = runner.invoke(app, ["ingest", str(synth_dataset), str(tmp_path / "x.zarr"), "--split", "val"])
    assert result.exit_code == 2
    assert "'val' is not one of 'train', 'test'" in result.output


def test_a_spinedata_warning_is_one_line(monkeypatch, capsys, tmp_path):
    """As when ``spine ingest --scheduler`` is interrupted and a task may still run on a worker."""
    import warnings

    import spinedata.ingest
    from cli.errors import run_app
    from spinedata.errors import ClusterWarning

    def interrupted(*args, **kwargs):
        warnings.warn("tasks of this ingest may still be writing into OUT on Dask workers", ClusterWarning,
                      stacklevel=2)
        raise KeyboardInterrupt

    monkeypatch.setattr(spinedata.ingest, "ingest", interrupted)
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(sys, "argv", ["spine", "ingest", str(tmp_path / "data"), str(tmp_path / "o.zarr")])
    with pytest.raises(SystemExit) as done:
        run_app(app)
    assert done.value.code != 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "warning: tasks of this ingest may still be writing into OUT on Dask workers", lines
