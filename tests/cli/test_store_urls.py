"""The commands that take a store take a URL (``s3://`` on a local S3 server here), and a URL that cannot
work is one ``error:`` line naming the fix."""

from __future__ import annotations

import json
import socket
import sys

import pytest
from typer.testing import CliRunner

from cli.app import app
from spinedata.store import create_or_open_store
from spinedata.store.writer import IngestLock
from tests.helpers.cli_helpers import cli_error

runner = CliRunner()


def info_json(*args: str) -> dict:
    result = runner.invoke(app, ["info", *args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    document.pop("store")
    return document


def test_ingest_info_verify_ngff_and_export_take_an_s3_url(small_store, s3_bucket, tmp_path, monkeypatch):
    data, local = small_store
    url = f"s3://{s3_bucket}/train.zarr"
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ingest", str(data), url, "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"{url}: 2 studies written" in result.output and f"report: {url}/ingest_report.csv" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing local (it once wrote a folder named "s3:")

    assert info_json(url) == info_json(str(local))
    study = info_json(str(local))["studies"][0]["study_id"]
    assert info_json(url, study) == info_json(str(local), study)
    shown = runner.invoke(app, ["info", url])
    assert shown.exit_code == 0 and "2 complete studies" in shown.output and url in shown.output

    verified = runner.invoke(app, ["verify", url])
    assert verified.exit_code == 0 and f"{url}: format 2, 2 studies" in verified.output, verified.output
    migrated = runner.invoke(app, ["ngff", url])
    assert migrated.exit_code == 0 and "NGFF metadata written to 0, 4 already had it" in migrated.output

    pytest.importorskip("nibabel")
    exported = runner.invoke(app, ["export", url, str(tmp_path / "nifti")])
    assert exported.exit_code == 0 and "wrote 4 images and 2 points" in exported.output, exported.output


def test_an_ingest_into_a_locked_or_missing_bucket_is_one_line(monkeypatch, capsys, small_store, s3_bucket):
    data = str(small_store[0])
    url = f"s3://{s3_bucket}/train.zarr"
    create_or_open_store(url, split="train", source="tests")
    with IngestLock(url):  # another ingest is writing the store
        message = cli_error(monkeypatch, capsys, ["ingest", data, url, "--no-progress"])
    assert message.startswith("error: another ingest (") and "is writing this store" in message
    message = cli_error(monkeypatch, capsys, ["ingest", data, "s3://no-such-bucket/x.zarr", "--no-progress"])
    assert message.startswith("error: cannot write s3://no-such-bucket/x.zarr/zarr.json: no such bucket")
    assert message.endswith("create the bucket first") and "\n" not in message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["info", "foo://bucket/x.zarr"], "error: unknown store protocol foo:// in 'foo://bucket/x.zarr'"),
        (["verify", "s3://"], "error: store URL 's3://' names no bucket: write s3://BUCKET/PATH.zarr"),
        (["info", "zip:///no/such.zip"], "error: no zip file at '/no/such.zip'"),
        (["ingest", "DATA", "zip:///x.zip"], "error: zip:///x.zip: zip:// stores are read-only"),
        (["show", "memory://spine-nothing/x.zarr", "1", "--out", "x.png"],
         "error: no Zarr store at 'memory://spine-nothing/x.zarr'"),
    ],
)  # fmt: skip
def test_a_url_that_cannot_work_is_one_line(monkeypatch, capsys, small_store, args, expected):
    args = [str(small_store[0]) if a == "DATA" else a for a in args]
    message = cli_error(monkeypatch, capsys, args)
    assert message.startswith(expected) and "\n" not in message


def test_missing_credentials_an_unreachable_endpoint_and_a_missing_extra_are_one_line(monkeypatch, capsys,
                                                                                       tmp_path):  # fmt: skip
    s3fs = pytest.importorskip("s3fs")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    message = cli_error(monkeypatch, capsys, ["info", "s3://bucket/x.zarr"])
    assert message == ("error: no credentials for s3://bucket/x.zarr/zarr.json: set AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment")  # fmt: skip

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3fs.S3FileSystem.clear_instance_cache()
    message = cli_error(monkeypatch, capsys, ["info", "s3://bucket/x.zarr"])
    assert message.startswith("error: cannot reach s3://bucket/x.zarr/zarr.json (Could not connect")
    assert message.endswith("check the endpoint (AWS_ENDPOINT_URL=http://127.0.0.1:" + message.rsplit(":", 1)[1])
    s3fs.S3FileSystem.clear_instance_cache()

    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if not installed
    message = cli_error(monkeypatch, capsys, ["info", "s3://bucket/x.zarr"])
    assert message == ("error: the store s3://bucket/x.zarr needs the cloud extra: pip install 'spine[cloud]' "
                       "(s3fs is not installed)")  # fmt: skip


@pytest.mark.parametrize("report", ["s3://bucket/r.csv", "file:///tmp/r.csv"])
def test_a_report_url_is_refused_as_typed_before_any_work(monkeypatch, capsys, small_store, tmp_path, report):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.zarr"
    message = cli_error(monkeypatch, capsys, ["ingest", str(small_store[0]), str(out), "--report", report])
    assert message == f"error: --report {report!r}: name a local file (the default report goes into the store)"
    assert list(tmp_path.iterdir()) == []  # no store, and no folder "s3:" holding a report
