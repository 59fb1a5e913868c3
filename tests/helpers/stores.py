"""Comparing stores in tests: every file or object byte for byte, or what ``open_dataset`` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# REPORT: the ingest report's name in a store (compared line by line with ``read_report``, not as bytes)
from spinedata.ingest.paths import REPORT_NAME as REPORT


def without_report(files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` (of ``local_files`` or ``stored_objects``) without the ingest report."""
    return {key: value for key, value in files.items() if key != REPORT}


def local_files(root: Path) -> dict[str, bytes]:
    """Every file of a local store, by store-relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stored_objects(url: str) -> dict[str, bytes]:
    """Every object of a store at a URL, by store-relative key (read with fsspec, not with spinedata)."""
    import fsspec

    fs, base = fsspec.url_to_fs(url, use_listings_cache=False)
    return {path[len(base):].lstrip("/"): fs.cat_file(path) for path in sorted(fs.find(base))}


def copy_store(root: Path, url: str) -> None:
    """Put every file of a local store as an object under ``url``."""
    import fsspec

    fs, base = fsspec.url_to_fs(url)
    fs.pipe({f"{base}/{key}": data for key, data in local_files(root).items()})


def assert_same_store(expected, actual) -> None:
    """The same studies, series, stacks (pixels, geometry, attributes), labels and targets."""
    assert actual.attrs == expected.attrs and actual.study_ids == expected.study_ids
    for study_id in expected.study_ids:
        a, b = expected.study(study_id), actual.study(study_id)
        assert list(b.series) == list(a.series) and b.warnings == a.warnings
        for series_id, series in a.series.items():
            other = b.series[series_id]
            assert (other.description, other.role, len(other.stacks)) == (series.description, series.role,
                                                                            len(series.stacks))  # fmt: skip
            for x, y in zip(series.stacks, other.stacks, strict=True):
                np.testing.assert_array_equal(y.read(), x.read())
                np.testing.assert_array_equal(y.affine, x.affine)
                np.testing.assert_array_equal(y.positions, x.positions)
                np.testing.assert_array_equal(y.instance_numbers, x.instance_numbers)
                assert y.attrs == x.attrs and y.flags == x.flags
    assert actual.labels.equals(expected.labels) and actual.targets.equals(expected.targets)
