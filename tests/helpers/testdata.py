"""Series of the real DICOM test data by name; a skip when the data at hand (the bundled subset,
``tests/data/dicom/README.md``) lacks the series."""

from __future__ import annotations

from pathlib import Path

import pytest


def dicom_case(root: Path, case: str) -> Path:
    """The folder ``root/dicom/case`` (``case`` e.g. ``dicom2nifti/anatomical/001``); skips the test when the
    test data at ``root`` does not hold it."""
    folder = root / "dicom" / case
    if not folder.is_dir():
        pytest.skip(f"{case} is not in the test data at {root} (the bundled subset; the full set: "
                    "../shared/testdata or SPINE_TESTDATA)")
    return folder
