"""``spine info --json`` and ``spine ingest --split`` as a choice."""

from __future__ import annotations

import json

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


def test_split_is_a_choice_of_the_layouts_splits(synth_dataset, tmp_path):
    assert tuple(s.value for s in Split) == SPLITS
    result = runner.invoke(app, ["ingest", str(synth_dataset), str(tmp_path / "x.zarr"), "--split", "val"])
    assert result.exit_code == 2
    assert "'val' is not one of 'train', 'test'" in result.output
