"""Shared fixtures. Real DICOM test data: $SPINE_TESTDATA when set, else ../shared/testdata (the full set),
else the subset bundled in tests/data (tests/data/dicom/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLED_TESTDATA = REPO / "tests" / "data"
"""A few MB of the real DICOM test data, in the repository (``tests/data/dicom/README.md``)."""


def _testdata_root() -> Path:
    if "SPINE_TESTDATA" in os.environ:
        return Path(os.environ["SPINE_TESTDATA"])
    shared = REPO.parent / "shared" / "testdata"
    return shared if (shared / "dicom").is_dir() else BUNDLED_TESTDATA


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    """Root of the real DICOM test data (``_testdata_root``); fails under CI when missing, skips elsewhere. A
    test of one series takes it through ``tests.helpers.testdata.dicom_case`` (a skip when it is not there)."""
    root = _testdata_root()
    if not (root / "dicom").is_dir():
        message = f"test data not found at {root} (set SPINE_TESTDATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


SYNTH_SEED = 7


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in the competition layout: 3 train + 1 test studies, small matrices.

    Holds train.csv, train_label_coordinates.csv, train_series_descriptions.csv, test_series_descriptions.csv,
    sample_submission.csv, synth_truth.csv, synth_flaws.csv, synth_studies.csv and {train,test}_images/.
    Read-only: copy it before changing anything.
    """
    from spinedata.synth import generate
    from spinedata.synth.options import SMALL

    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, 3, SYNTH_SEED, n_test_studies=1, **SMALL)
    return root


@pytest.fixture(scope="session")
def synth_store(synth_dataset, tmp_path_factory) -> Path:
    """``synth_dataset``'s training split ingested once (one worker). Read-only: copy it before changing
    anything."""
    from spinedata.ingest import ingest

    path = tmp_path_factory.mktemp("synth_store") / "train.zarr"
    ingest(synth_dataset, path, workers=1)
    return path


@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> tuple[Path, Path]:
    """``(input folder, its store)``: two small studies of two series each (``write_competition_dataset``),
    ingested with one worker. The store-URL tests use it: each request to the local S3 server costs
    ~10-20 ms. Read-only: copy it before changing anything."""
    from spinedata.ingest import ingest
    from tests.helpers.ingest_data import write_competition_dataset

    root = tmp_path_factory.mktemp("small")
    write_competition_dataset(root / "data")
    ingest(root / "data", root / "train.zarr", workers=1)
    return root / "data", root / "train.zarr"


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of a local S3-compatible server (moto's, started once per test process; ``tests.helpers.s3server``).
    Skips when moto or s3fs is not installed (the dev and cloud extras)."""
    pytest.importorskip("moto.server", reason="moto[server] (dev extra) runs the local S3 server")
    pytest.importorskip("s3fs", reason="s3fs (cloud extra) reads s3:// stores")
    from tests.helpers.s3server import start_server

    server, endpoint = start_server()
    yield endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    """A new empty bucket on ``s3_endpoint``; the environment names the server and its credentials, as a
    user's would (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...)."""
    from tests.helpers.s3server import CREDENTIALS, close_filesystems, new_bucket

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    close_filesystems()  # fsspec keeps filesystems (and their credentials) per process
    yield new_bucket(s3_endpoint)
    close_filesystems()  # and their sessions, which aiohttp reports on stderr when collected unclosed
