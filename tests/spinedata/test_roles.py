"""Series roles from descriptions, planes from orientations."""

from __future__ import annotations

import pytest

from spinedata.roles import plane_from_orientation, role_from_description


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("Sagittal T1", "Sagittal T1"),
        ("Sagittal T2/STIR", "Sagittal T2/STIR"),
        ("Axial T2", "Axial T2"),
        ("  sagittal t2/stir ", "Sagittal T2/STIR"),
        ("SAG T1 TSE", "Sagittal T1"),
        ("t1_tse_sag", "Sagittal T1"),
        ("Sag STIR", "Sagittal T2/STIR"),
        ("T2W_TSE SAG", "Sagittal T2/STIR"),
        ("AX T2 FRFSE", "Axial T2"),
        ("t2_tse_tra_384", "Axial T2"),
    ],
)
def test_role_from_description_matches(text, role):
    assert role_from_description(text) == role


@pytest.mark.parametrize(
    "text",
    [None, "", "localizer", "COR T2", "AX T1", "SAG T1 T2", "sag ax t2", "synthetic", "T2 FSE"],
)
def test_role_from_description_refuses_to_guess(text):
    assert role_from_description(text) is None


def test_plane_from_orientation():
    assert plane_from_orientation([0, 1, 0, 0, 0, -1]) == "sagittal"
    assert plane_from_orientation([1, 0, 0, 0, 1, 0]) == "axial"
    assert plane_from_orientation([1, 0, 0, 0, 0, -1]) == "coronal"
