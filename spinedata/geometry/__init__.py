"""Stack geometry: voxel <-> patient (LPS mm) mapping from real DICOM slice positions.

Conventions (see ``docs/geometry.md`` and ``docs/design.md``):

* arrays are indexed ``(slice, row, col)``;
* ``IOP[0:3]`` = ``r`` is the direction of increasing column, ``IOP[3:6]`` = ``c`` of increasing row,
  ``PixelSpacing = (drow, dcol)``, ``n = r x c``; slices are sorted by ascending ``n . IPP``;
* the affine ``A`` maps ``(slice, row, col, 1)`` to LPS millimetres (+x left, +y posterior, +z head)::

      A[:3, 0] = (IPP_last - IPP_first) / (N - 1)     # one slice: n * spacing
      A[:3, 1] = drow * c
      A[:3, 2] = dcol * r
      A[:3, 3] = IPP_first

For evenly spaced stacks ``voxel_to_world`` is exactly the affine. For stacks flagged ``nonuniform``
the affine is the first-to-last mean step, while ``voxel_to_world``, ``world_to_voxel`` and ``project``
follow every slice's own position (piecewise linear between slices), so a labelled point never moves.

One module per topic: ``orientation`` (IOP, the slice normal, plausible positions and spacings), ``affine``
(the affine from positions, applying it, LPS -> RAS), ``spacing`` (slice gaps, missing slices, the flags),
``stack`` (``StackGeometry``, ``Projection``). Their public names are imported from here.
"""

from spinedata.geometry.affine import LPS_TO_RAS, affine_from_positions, apply_affine, lps_to_ras
from spinedata.geometry.orientation import (
    MAX_ABS_COORDINATE_MM,
    MAX_SPACING_MM,
    MIN_SPACING_MM,
    ORIENTATION_ATOL,
    ORTHOGONALITY_ATOL,
    UNIT_NORM_RTOL,
    geometry_problem,
    normalise_orientation,
    plausible_spacing,
    slice_normal,
    unit_orientation,
)
from spinedata.geometry.spacing import (
    FLAG_DEFAULT_SPACING,
    FLAG_MISSING_SLICES,
    FLAG_NONUNIFORM,
    FLAG_SHEAR,
    FLAG_SINGLE_SLICE,
    FLAGS,
    GAP_JUMP_FACTOR,
    INPLANE_JUMP_PIXELS,
    MAX_MISSING_RUN,
    MISSING_SLICE_RTOL,
    POSITION_REPEAT_MM,
    SHEAR_ATOL,
    SPACING_ATOL_MM,
    SPACING_RTOL,
    base_gap,
    classify_gaps,
)
from spinedata.geometry.stack import DEFAULT_SINGLE_SLICE_MM, Projection, StackGeometry

__all__ = [
    "DEFAULT_SINGLE_SLICE_MM", "FLAGS", "FLAG_DEFAULT_SPACING", "FLAG_MISSING_SLICES", "FLAG_NONUNIFORM",
    "FLAG_SHEAR", "FLAG_SINGLE_SLICE", "GAP_JUMP_FACTOR", "INPLANE_JUMP_PIXELS", "LPS_TO_RAS", "MAX_ABS_COORDINATE_MM",
    "MAX_MISSING_RUN", "MAX_SPACING_MM", "MIN_SPACING_MM", "MISSING_SLICE_RTOL", "ORIENTATION_ATOL",
    "ORTHOGONALITY_ATOL", "POSITION_REPEAT_MM", "SHEAR_ATOL", "SPACING_ATOL_MM", "SPACING_RTOL", "UNIT_NORM_RTOL",
    "Projection", "StackGeometry", "affine_from_positions", "apply_affine", "base_gap", "classify_gaps",
    "geometry_problem", "lps_to_ras", "normalise_orientation", "plausible_spacing", "slice_normal", "unit_orientation",
]
