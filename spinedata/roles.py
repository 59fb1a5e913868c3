"""Series roles (``Sagittal T1``, ``Sagittal T2/STIR``, ``Axial T2``) from free-text series descriptions.

The competition's CSVs name the role exactly. Scanner series descriptions vary (``SAG T1 TSE``,
``t2_tse_tra``, ``Sag STIR``, ``AX T2 FRFSE``); a description maps to a role only when it names one
plane and one weighting without ambiguity, otherwise the role is ``None`` (never a guess).
"""

from __future__ import annotations

import re

import numpy as np

from spinedata.constants import ROLE_AXIAL_T2, ROLE_SAG_T1, ROLE_SAG_T2, ROLES

SAGITTAL_WORDS = frozenset({"sag", "sagittal", "sagital", "sagitta"})
AXIAL_WORDS = frozenset({"ax", "axial", "tra", "trans", "transverse", "transversal"})
CORONAL_WORDS = frozenset({"cor", "coronal"})
T1_WORDS = frozenset({"t1", "t1w", "t1wi", "t1tse", "t1fse"})
T2_WORDS = frozenset({"t2", "t2w", "t2wi", "t2tse", "t2fse", "stir", "tirm", "t2stir"})

_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> set[str]:
    """Lower-cased alphanumeric words of a description (``'t2_tse_SAG'`` -> {t2, tse, sag})."""
    return set(_TOKEN.findall(text.lower()))


def role_from_description(text: str | None) -> str | None:
    """The role named by a series description, or ``None`` when it names none or is ambiguous.

    An exact role name (as in the competition's CSVs) is returned as is. Otherwise the description must
    name exactly one plane (sagittal or axial) and exactly one weighting (T1, or T2/STIR); an axial T1,
    a coronal series or a description naming both T1 and T2 has no role.
    """
    if text is None:
        return None
    stripped = text.strip()
    for role in ROLES:
        if stripped.lower() == role.lower():
            return role
    words = _tokens(stripped)
    sagittal = bool(words & SAGITTAL_WORDS)
    axial = bool(words & AXIAL_WORDS)
    t1 = bool(words & T1_WORDS)
    t2 = bool(words & T2_WORDS)
    if words & CORONAL_WORDS or sagittal == axial or t1 == t2:
        return None
    if sagittal:
        return ROLE_SAG_T1 if t1 else ROLE_SAG_T2
    return ROLE_AXIAL_T2 if t2 else None


def plane_from_orientation(orientation) -> str:
    """``'sagittal'``, ``'coronal'`` or ``'axial'``: the patient axis closest to the slice normal of an IOP
    ``(6,)`` (LPS: x -> sagittal, y -> coronal, z -> axial)."""
    iop = np.asarray(orientation, dtype=np.float64).reshape(6)
    normal = np.cross(iop[:3], iop[3:])
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]
