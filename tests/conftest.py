"""Shared fixtures. Test data lives at ../shared/testdata (or $SPINE_TESTDATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _testdata_root() -> Path:
    return Path(os.environ.get("SPINE_TESTDATA", REPO.parent / "shared" / "testdata"))


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    """Root of the real DICOM test data; fails under CI when missing, skips elsewhere."""
    root = _testdata_root()
    if not (root / "dicom").is_dir():
        message = f"test data not found at {root} (set SPINE_TESTDATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root
