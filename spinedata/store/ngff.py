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

Optional downsampled levels (``spine ngff STORE --levels N``; data written by ``spinedata.store.levels``)
are further datasets of the same multiscale, ``levels/1``, ``levels/2``, ... in a subgroup (beside
``image``, arrays of other row and column counts under the same dimension names would stop xarray from
opening the stack group): level ``l`` is the mean of ``2**l x 2**l`` pixel blocks, so its ``scale`` is
the image's with the row and column spacings times ``2**l``, and its ``translation`` moves the first
pixel's centre by ``(2**l - 1) / 2`` image pixels along rows and columns (the centre of the block it
averages). ``spinedata_ngff`` gives each level its voxel-to-LPS affine too.

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


def level_path(level: int) -> str:
    """The NGFF dataset path of a level: ``image`` for 0, else ``levels/<level>`` (relative to the stack)."""
    return L.IMAGE if level == 0 else f"{L.LEVELS}/{level}"


def level_factor(level: int) -> int:
    """How many image pixels a pixel of ``level`` spans along rows and along columns."""
    return 2**level


def level_voxel_map(level: int) -> np.ndarray:
    """``(4, 4)``: a voxel ``(slice, row, col, 1)`` of ``level`` -> the image's (fractional) voxel at the
    centre of the block it averages: ``row * f + (f - 1) / 2`` (and the same for columns), ``f = 2**level``."""
    f = level_factor(level)
    return np.array([[1, 0, 0, 0], [0, f, 0, (f - 1) / 2], [0, 0, f, (f - 1) / 2], [0, 0, 0, 1]], np.float64)


def listed_levels(attrs: dict) -> int:
    """How many downsampled levels a stack group's ``ome`` metadata lists (``levels/1`` ... in order)."""
    try:
        paths = [d.get("path") for d in attrs[OME]["multiscales"][0]["datasets"]]
    except (KeyError, IndexError, TypeError, AttributeError):
        return 0
    n = 0
    while n + 1 < len(paths) and paths[n + 1] == level_path(n + 1):
        n += 1
    return n


def stack_ngff_attrs(attrs: dict, name: str, levels: int = 0) -> dict:
    """``{"ome": ..., "spinedata_ngff": ...}`` for a stack group whose geometry attributes are ``attrs``
    (``StackGeometry.to_attrs()``, or the same read back from JSON); ``name``: the image's name
    (``<study>/<series>/<k>``); ``levels``: how many downsampled levels to list after ``image``. A pure
    function of its arguments: ingest and migration write the same."""
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
    datasets = []
    for level in range(levels + 1):
        f = level_factor(level)
        shift = (f - 1) / 2
        datasets.append({
            "path": level_path(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": [scale[0], drow * f, dcol * f]},
                {"type": "translation",
                 "translation": [translation[0], translation[1] + shift * drow, translation[2] + shift * dcol]},
            ],
        })  # fmt: skip
    ome = {"version": NGFF_VERSION, "multiscales": [{"name": name, "axes": axes(), "datasets": datasets}]}
    extra = {
        "exact": not inexact,
        "warning": warning,
        "frame": "the 0.5 coordinates of an LPS point p are (n . p, c . p, r . p) mm: r = IOP[0:3], "
        "c = IOP[3:6], n = r x c",
        "coordinateSystems": [
            {"name": LPS_SYSTEM, "axes": [{"name": a, "type": "space", "unit": UNIT} for a in ("x", "y", "z")]}
        ],
        "coordinateTransformations": [
            {"type": "affine", "input": level_path(level), "output": LPS_SYSTEM,
             "affine": (affine @ level_voxel_map(level))[:3].tolist() if level else affine[:3].tolist()}
            for level in range(levels + 1)
        ],  # fmt: skip
    }
    return {OME: ome, EXTRA: extra}


def with_ngff(attrs: dict, name: str, levels: int | None = None) -> dict:
    """A stack group's attributes with its NGFF metadata (any earlier NGFF keys replaced), listing
    ``levels`` downsampled levels; ``None``: as many as ``attrs`` list now (none for a new stack)."""
    levels = listed_levels(attrs) if levels is None else levels
    plain = {key: value for key, value in attrs.items() if key not in NGFF_KEYS}
    return {**plain, **stack_ngff_attrs(plain, name, levels)}
