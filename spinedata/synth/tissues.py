"""Tissue classes of the synthetic anatomy and their MR signal per contrast.

Rendering first assigns every sample point one tissue label (uint8), then looks the label up in a
per-series intensity table, so the expensive geometry is computed once per point whatever the contrast.
"""

from __future__ import annotations

import numpy as np

AIR = 0
FAT = 1  # subcutaneous and intermuscular fat
MUSCLE = 2
VISCERA = 3  # abdominal contents in front of the spine
MARROW = 4  # vertebral body marrow
CORTEX = 5  # cortical bone, endplates, fused sacral discs
ANNULUS = 6
CSF = 7
ROOT = 8  # nerve roots (cauda equina, exiting and descending roots)
EPIDURAL_FAT = 9
LIGAMENT = 10  # ligamentum flavum, interspinous ligament, facet capsule, lateral disc tissue
POST_MARROW = 11  # marrow of the posterior elements (pedicles, laminae, facets, spinous processes)
FORAMEN_FAT = 12
ARTERY = 13  # aorta: flow void
VEIN = 14  # inferior vena cava: slow flow
CORD = 15  # spinal cord and conus
NUCLEUS_BASE = 32
"""Disc nucleus of disc ``j`` has label ``NUCLEUS_BASE + j``: its T2 signal depends on that disc's degeneration."""

N_LABELS = 64

CONTRASTS: tuple[str, ...] = ("T1", "T2", "STIR")

# Relative signal (0..1, CSF on T2 = 1) of each tissue: (T1, T2, STIR). Fast spin echo T2 keeps fat bright;
# STIR suppresses it. CSF is dark on T1 and bright on T2; foraminal and epidural fat bright on T1.
BASE_SIGNAL: dict[int, tuple[float, float, float]] = {
    AIR: (0.0, 0.0, 0.0),
    FAT: (0.95, 0.78, 0.07),
    MUSCLE: (0.36, 0.24, 0.22),
    VISCERA: (0.45, 0.42, 0.40),
    MARROW: (0.70, 0.45, 0.18),
    CORTEX: (0.06, 0.05, 0.05),
    ANNULUS: (0.33, 0.17, 0.18),
    CSF: (0.13, 1.00, 1.00),
    ROOT: (0.38, 0.28, 0.30),
    EPIDURAL_FAT: (0.92, 0.70, 0.07),
    LIGAMENT: (0.16, 0.12, 0.12),
    POST_MARROW: (0.62, 0.40, 0.17),
    FORAMEN_FAT: (0.95, 0.70, 0.07),
    ARTERY: (0.05, 0.04, 0.04),
    VEIN: (0.30, 0.55, 0.60),
    CORD: (0.46, 0.40, 0.42),
}
NUCLEUS_T1 = 0.38
NUCLEUS_T2_HEALTHY = 0.88
NUCLEUS_T2_DEGENERATED = 0.22
TISSUE_VARIATION = 0.06
"""Relative standard deviation of each tissue's signal between studies."""


def signal_table(
    contrast: str, nucleus_degeneration: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Intensity of every label for one contrast: ``(N_LABELS,)`` float32.

    ``nucleus_degeneration``: ``(n_discs,)`` in 0..1 (0 healthy, bright on T2; 1 dark).
    """
    column = CONTRASTS.index(contrast)
    table = np.zeros(N_LABELS, np.float32)
    for label, values in BASE_SIGNAL.items():
        table[label] = values[column] * (1.0 + TISSUE_VARIATION * rng.standard_normal())
    degeneration = np.clip(np.asarray(nucleus_degeneration, float), 0.0, 1.0)
    if contrast == "T1":
        nucleus = np.full(degeneration.shape, NUCLEUS_T1)
    else:
        nucleus = NUCLEUS_T2_HEALTHY + (NUCLEUS_T2_DEGENERATED - NUCLEUS_T2_HEALTHY) * degeneration
    table[NUCLEUS_BASE : NUCLEUS_BASE + len(nucleus)] = nucleus
    table[AIR] = 0.0
    return np.clip(table, 0.0, None)
