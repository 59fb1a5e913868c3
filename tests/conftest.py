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
