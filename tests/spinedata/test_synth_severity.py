"""Severity is visible where a radiologist looks: sizes measured in rendered images fall with the grade."""

from __future__ import annotations

import pandas as pd
import pytest

from spinedata.synth.measure import grade_sizes

N_STUDIES = 12


@pytest.fixture(scope="module")
def sizes() -> pd.DataFrame:
    """Canal width (mm), foraminal fat (mm^2), recess depth (mm) over studies drawn with balanced grades."""
    return grade_sizes(N_STUDIES, seed=21)


@pytest.mark.parametrize("group", ["spinal", "foraminal", "subarticular"])
def test_size_falls_with_grade(sizes: pd.DataFrame, group: str) -> None:
    chosen = sizes[sizes["group"] == group]
    counts = chosen["grade"].value_counts()
    assert all(counts.get(g, 0) >= 10 for g in (0, 1, 2)), counts
    means = chosen.groupby("grade")["size"].mean()
    assert means[0] > means[1] > means[2], means
    assert means[0] > 1.4 * means[2], means


def test_neighbouring_grades_overlap(sizes: pd.DataFrame) -> None:
    """Learnable but not trivial: some Normal/Mild canals are narrower than some Moderate ones."""
    spinal = sizes[sizes["group"] == "spinal"]
    assert spinal[spinal["grade"] == 0]["size"].min() < spinal[spinal["grade"] == 1]["size"].max()


def test_spinal_width_is_in_mm_range(sizes: pd.DataFrame) -> None:
    spinal = sizes[sizes["group"] == "spinal"].groupby("grade")["size"].mean()
    assert 10.0 < spinal[0] < 17.0
    assert 1.5 < spinal[2] < 8.0  # severe: the roots bunch and little CSF is left
