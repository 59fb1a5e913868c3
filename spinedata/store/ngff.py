"""OME-Zarr (NGFF 0.5) metadata of the store's stacks, so that ome-zarr-py and napari open a stack group.

Every stack group ``studies/<study>/<series>/<k>/`` is also an NGFF 0.5 image: its attributes hold, beside
the stack's geometry (``StackGeometry.to_attrs()``),

- ``ome``: ``{"version": "0.5", "multiscales": [...]}`` with the three space axes ``slice``, ``row``,
  ``col`` (unit ``millimeter``; the names of the ``image`` array's ``dimension_names``), one dataset, the
  ``image`` array itself, and its ``scale`` (slice spacing, row spacing, column spacing, mm) and
  ``translation``: the first voxel's centre in the stack's own frame, i.e. an LPS point ``p`` has the
  coordinates ``(n . p, c . p, r . p)`` (``r = IOP[0:3]``, ``c = IOP[3:6]``, ``n = r x c``). Stacks that
  share an orientation (the stacks of one series, two series planned alike) therefore line up in a viewer;
  stacks of other orientations live in other frames (NGFF 0.5 has no rotation).
- ``spinedata_ngff``: what 0.5 cannot say, namespaced so that 0.5 validation is untouched: the whole
  voxel-to-LPS affine as an NGFF 0.6 (RFC-5) style ``affine`` transformation from the ``image`` array to an
  ``LPS`` coordinate system, whether the 0.5 scale and translation are exact, and a warning when they are
  not (stacks flagged ``nonuniform``, ``missing_slices`` or ``shear``: a viewer shows them on a regular
  grid).

``spinedata.store.migrate.add_ngff(store)`` (``spine ngff STORE``) writes these attributes into a store written without them (by
an earlier version, format 1 or 2), in place and idempotently, under the ``IngestLock``.
"""

from __future__ import annotations

import numpy as np

from spinedata.geometry import FLAG_MISSING_SLICES, FLAG_NONUNIFORM, FLAG_SHEAR
from spinedata.store import layout as L

NGFF_VERSION = "0.5"
OME = "ome"
"""Zarr v3 attribute holding the NGFF 0.5 metadata (the spec's namespace)."""
EXTRA = "spinedata_ngff"
"""Attribute holding what NGFF 0.5 cannot express: the full affine (RFC-5 style), exactness, a warning."""
NGFF_KEYS = (OME, EXTRA)
UNIT = "millimeter"
LPS_SYSTEM = "LPS"
INEXACT_FLAGS = (FLAG_NONUNIFORM, FLAG_MISSING_SLICES, FLAG_SHEAR)
"""Stack flags under which a scale and a translation do not place every slice where it was acquired."""


def axes() -> list[dict]:
    """The NGFF axes of a stack: its three array dimensions, all space, in millimetres."""
    return [{"name": name, "type": "space", "unit": UNIT} for name in L.IMAGE_DIMS]


def stack_ngff_attrs(attrs: dict, name: str) -> dict:
    """``{"ome": ..., "spinedata_ngff": ...}`` for a stack group whose geometry attributes are ``attrs``
    (``StackGeometry.to_attrs()``, or the same read back from JSON); ``name``: the image's name
    (``<study>/<series>/<k>``). A pure function of its arguments: ingest and migration write the same."""
    affine = np.asarray(attrs["affine"], dtype=np.float64)
    iop = np.asarray(attrs["orientation"], dtype=np.float64)
    r, c = iop[:3], iop[3:6]
    n = np.cross(r, c)
    first = affine[:3, 3]
    drow, dcol = (float(v) for v in attrs["pixel_spacing"])
    scale = [float(attrs["slice_spacing"]), drow, dcol]
    translation = [float(n @ first), float(c @ first), float(r @ first)]
    inexact = [flag for flag in attrs.get("flags", ()) if flag in INEXACT_FLAGS]
    warning = None
    if inexact:
        warning = (
            f"stack flagged {', '.join(inexact)}: the NGFF scale and translation put its slices on a regular "
            "grid (the mean step along the slice normal); the acquired positions are in the `position` array "
            "and spinedata's Stack.voxel_to_world follows them"
        )
    ome = {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": axes(),
                "datasets": [
                    {
                        "path": L.IMAGE,
                        "coordinateTransformations": [
                            {"type": "scale", "scale": scale},
                            {"type": "translation", "translation": translation},
                        ],
                    }
                ],
            }
        ],
    }
    extra = {
        "exact": not inexact,
        "warning": warning,
        "frame": "the 0.5 coordinates of an LPS point p are (n . p, c . p, r . p) mm: r = IOP[0:3], "
        "c = IOP[3:6], n = r x c",
        "coordinateSystems": [
            {"name": LPS_SYSTEM, "axes": [{"name": a, "type": "space", "unit": UNIT} for a in ("x", "y", "z")]}
        ],
        "coordinateTransformations": [
            {"type": "affine", "input": L.IMAGE, "output": LPS_SYSTEM, "affine": affine[:3].tolist()}
        ],
    }
    return {OME: ome, EXTRA: extra}


def with_ngff(attrs: dict, name: str) -> dict:
    """A stack group's attributes with its NGFF metadata (any earlier NGFF keys replaced)."""
    plain = {key: value for key, value in attrs.items() if key not in NGFF_KEYS}
    return {**plain, **stack_ngff_attrs(plain, name)}
