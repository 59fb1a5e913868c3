"""Exports of stacks to the imaging ecosystem: NIfTI (nibabel), SimpleITK, TorchIO and MONAI.

Every export is one regular grid with one affine. The conversions (see ``docs/interop.md``):

* **NIfTI / nibabel, TorchIO, MONAI** (RAS, array ``(x, y, z)`` = ``(col, row, slice)``): the array is the
  stack's ``(slice, row, col)`` array transposed ``(2, 1, 0)``, the affine ``lps_to_ras(A)[:, [2, 1, 0, 3]]``
  (``diag(-1,-1,1,1) @ A`` with its columns permuted to the array's new axis order). The voxel ``(i, j, k)``
  of the export is the stack's voxel ``(slice=k, row=j, col=i)``; this is what dcm2niix writes, up to its
  own flip of the row axis (tested against dcm2niix's output in ``tests/spinedata/test_export.py``).
* **SimpleITK** (LPS, as ITK works): ``sitk.GetImageFromArray`` of the ``(slice, row, col)`` array (ITK
  index ``(i, j, k)`` = ``(col, row, slice)``), origin = ``A[:3, 3]`` (IPP of the first slice), spacing =
  ``(dcol, drow, |A[:3, 0]|)``, direction = the unit columns ``(r, c, step / |step|)``.

A stack flagged ``nonuniform``, ``missing_slices`` or ``shear`` is not one regular grid: no affine puts
every voxel where it was acquired. Such a stack is refused (``ExportError``) unless ``resample=True``,
which interpolates it onto a regular grid (``spinedata.resample.resample_uniform``; what exactly it does is
written there).

The libraries belong to the ``interop`` extra (``pip install 'spine[interop]'``) and are imported only
when an export is made; a missing one is a ``MissingExtraError`` (``ExtraNotInstalled``) of one line. TorchIO and MONAI load
torch; nothing here imports it directly (``import spinedata`` never loads torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from spinedata.errors import ExtraNotInstalled, SpineError, import_extra
from spinedata.geometry import (
    FLAG_MISSING_SLICES,
    FLAG_NONUNIFORM,
    FLAG_SHEAR,
    StackGeometry,
    apply_affine,
    lps_to_ras,
)
from spinedata.resample import resample_uniform

if TYPE_CHECKING:
    import pandas as pd

IRREGULAR_FLAGS: tuple[str, ...] = (FLAG_NONUNIFORM, FLAG_MISSING_SLICES, FLAG_SHEAR)
"""Flags of stacks that no single affine describes: refused unless resampled."""
NIFTI_ORDER = [2, 1, 0, 3]
"""Column permutation turning a ``(slice, row, col)`` affine into one of the ``(col, row, slice)`` array."""
NIFTI_XFORM_SCANNER_ANAT = 1
"""NIfTI qform/sform code 1 (scanner-based anatomical coordinates), as dcm2niix writes."""
POINT_COLUMNS = ("lps_x", "lps_y", "lps_z", "ras_x", "ras_y", "ras_z", "i", "j", "k")
"""Columns ``points_table`` adds: LPS and RAS mm, and the voxel ``(i, j, k)`` of the exported image
(NIfTI / ITK index order: ``i`` = column, ``j`` = row, ``k`` = slice; fractional, voxel centres at integers)."""


class ExportError(SpineError):
    """A stack cannot be exported as asked (an irregular grid without ``resample``)."""


MissingExtraError = ExtraNotInstalled
"""A library of the ``interop`` extra is not installed (``spinedata.errors.ExtraNotInstalled``)."""


class StackLike(Protocol):
    """What an export reads: a ``store.reader.Stack``, or an ``ArrayStack`` of arrays in memory."""

    @property
    def geometry(self) -> StackGeometry: ...

    def read(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ArrayStack:
    """A stack held in memory: ``volume (slice, row, col)`` with its ``StackGeometry`` (e.g. from
    ``stacks.build_stacks`` and ``dicom.read_stack``), exportable like a store's ``Stack``."""

    volume: np.ndarray
    geometry: StackGeometry
    name: str = ""

    def __post_init__(self) -> None:
        if tuple(np.shape(self.volume)) != tuple(self.geometry.shape):
            raise ExportError(f"volume of shape {np.shape(self.volume)} does not match its geometry {self.geometry.shape}")

    @property
    def flags(self) -> tuple[str, ...]:
        return self.geometry.flags

    def read(self) -> np.ndarray:
        return np.asarray(self.volume)


@dataclass(frozen=True)
class ExportImage:
    """One regular grid ready to export: ``volume (slice, row, col)`` and its LPS ``affine`` (4x4, voxel
    ``(slice, row, col, 1)`` -> LPS mm), ``resampled`` when it was interpolated (``resample_uniform``)."""

    volume: np.ndarray
    affine: np.ndarray
    resampled: bool = False
    name: str = ""

    @property
    def ras_affine(self) -> np.ndarray:
        """``(4,4)`` voxel ``(i=col, j=row, k=slice, 1)`` -> RAS mm: the affine of the NIfTI export."""
        return lps_to_ras(self.affine)[:, NIFTI_ORDER]

    @property
    def nifti_array(self) -> np.ndarray:
        """The volume in NIfTI axis order ``(x=col, y=row, z=slice)`` (a view)."""
        return np.asarray(self.volume).transpose(2, 1, 0)

    def world_to_index(self, lps) -> np.ndarray:
        """``(...,3)`` LPS mm -> ``(...,3)`` fractional voxel ``(i, j, k)`` of the export (NIfTI/ITK order)."""
        voxel = apply_affine(np.linalg.inv(self.affine), lps)
        return voxel[..., ::-1]

    def index_to_world(self, ijk) -> np.ndarray:
        """``(...,3)`` voxel ``(i, j, k)`` of the export -> ``(...,3)`` LPS mm."""
        return apply_affine(self.affine, np.asarray(ijk, dtype=np.float64)[..., ::-1])


def _name(stack: Any) -> str:
    return str(getattr(stack, "path", "") or getattr(stack, "name", "") or "stack")


def export_image(stack: StackLike, *, resample: bool = False) -> ExportImage:
    """The stack as one regular grid: as stored when it is regular; ``ExportError`` for a stack flagged
    ``nonuniform``, ``missing_slices`` or ``shear`` unless ``resample`` (then ``resample_uniform``)."""
    geometry = stack.geometry
    irregular = [f for f in geometry.flags if f in IRREGULAR_FLAGS]
    if irregular:
        if not resample:
            raise ExportError(
                f"{_name(stack)} is flagged {', '.join(irregular)}: its slices are not one regular grid, so no "
                "single affine places every voxel where it was acquired; resample it onto a uniform grid "
                "(resample=True, `spine export --resample`) or read it with voxel_to_world"
            )
        volume, affine = resample_uniform(stack.read(), geometry)
        return ExportImage(volume, affine, resampled=True, name=_name(stack))
    return ExportImage(stack.read(), np.array(geometry.affine), resampled=False, name=_name(stack))


# --------------------------------------------------------------------------------------------- targets
def nifti_image(image: ExportImage):
    """A ``nibabel.Nifti1Image`` of an ``ExportImage``: array ``(x, y, z)``, RAS affine as both sform and
    qform (code 1, scanner), units mm."""
    nib = import_extra("nibabel", "NIfTI export")
    out = nib.Nifti1Image(image.nifti_array, image.ras_affine)
    out.set_sform(image.ras_affine, code=NIFTI_XFORM_SCANNER_ANAT)
    out.set_qform(image.ras_affine, code=NIFTI_XFORM_SCANNER_ANAT)
    out.header.set_xyzt_units("mm")
    if image.name:
        out.header["descrip"] = image.name[-79:].encode("ascii", "replace")
    return out


def to_nifti(stack: StackLike, *, resample: bool = False):
    """The stack as a ``nibabel.Nifti1Image`` (RAS affine, array ``(col, row, slice)``)."""
    return nifti_image(export_image(stack, resample=resample))


def sitk_image(image: ExportImage):
    """A ``SimpleITK.Image`` of an ``ExportImage``: index ``(col, row, slice)``, origin, spacing and
    direction in LPS (ITK's physical space), so ``TransformIndexToPhysicalPoint((i, j, k))`` is the
    stack's ``voxel_to_world((k, j, i))``."""
    sitk = import_extra("SimpleITK", "SimpleITK export")
    out = sitk.GetImageFromArray(np.ascontiguousarray(image.volume), isVector=False)
    columns = image.affine[:3, [2, 1, 0]]  # (dcol * r, drow * c, step) in ITK index order
    spacing = np.linalg.norm(columns, axis=0)
    out.SetOrigin(tuple(float(v) for v in image.affine[:3, 3]))
    out.SetSpacing(tuple(float(v) for v in spacing))
    out.SetDirection(tuple(float(v) for v in (columns / spacing).ravel()))
    return out


def to_sitk(stack: StackLike, *, resample: bool = False):
    """The stack as a ``SimpleITK.Image`` (LPS origin/spacing/direction)."""
    return sitk_image(export_image(stack, resample=resample))


def _torch_friendly(array: np.ndarray) -> np.ndarray:
    """Unsigned integers widened to the next signed type (torch has no general uint16/uint32 support)."""
    wider = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64}.get(array.dtype)
    return array.astype(wider) if wider is not None else array


def to_torchio(stack: StackLike, *, resample: bool = False):
    """The stack as a ``torchio.ScalarImage``: tensor ``(1, x, y, z)`` = ``(1, col, row, slice)`` and the
    RAS affine (TorchIO's convention, the NIfTI export's). uint16 pixels become int32 (exact)."""
    tio = import_extra("torchio", "TorchIO export")
    image = export_image(stack, resample=resample)
    tensor = np.ascontiguousarray(_torch_friendly(image.nifti_array))[None]
    return tio.ScalarImage(tensor=tensor, affine=image.ras_affine)


def to_monai(stack: StackLike, *, resample: bool = False):
    """The stack as a channel-first ``monai.data.MetaTensor`` ``(1, x, y, z)`` with ``affine`` the RAS
    affine and ``meta['space'] = 'RAS'`` (MONAI's ``SpaceKeys.RAS``), ``original_channel_dim`` 0 and
    ``filename_or_obj`` the stack's path. uint16 pixels become int32 (exact)."""
    import_extra("monai", "MONAI export")
    data = import_extra("monai.data", "MONAI export")
    utils = import_extra("monai.utils", "MONAI export")
    image = export_image(stack, resample=resample)
    array = np.ascontiguousarray(_torch_friendly(image.nifti_array))[None]
    meta = {
        utils.MetaKeys.SPACE: utils.SpaceKeys.RAS,
        utils.MetaKeys.ORIGINAL_CHANNEL_DIM: 0,
        "filename_or_obj": image.name,
        "original_affine": image.ras_affine,
    }
    return data.MetaTensor(array, affine=image.ras_affine, meta=meta)


# --------------------------------------------------------------------------------------------- points
def points_table(image: ExportImage, points: pd.DataFrame, columns=("world_x", "world_y", "world_z")) -> pd.DataFrame:
    """``points`` (any table with LPS mm in ``columns``: the store's labels, ``spine locate``'s coords)
    with ``POINT_COLUMNS`` added: LPS and RAS mm and the fractional voxel ``(i, j, k)`` of the exported
    image (``i`` = column, ``j`` = row, ``k`` = slice; NIfTI and ITK order). Rows without coordinates
    keep NaN."""
    out = points.copy()
    lps = out[list(columns)].to_numpy(dtype=np.float64).reshape(-1, 3)
    ras = lps * np.array([-1.0, -1.0, 1.0])
    ijk = image.world_to_index(lps)
    for k, axis in enumerate("xyz"):
        out[f"lps_{axis}"] = lps[:, k]
        out[f"ras_{axis}"] = ras[:, k]
    for k, axis in enumerate("ijk"):
        out[axis] = ijk[:, k]
    return out


# --------------------------------------------------------------------------------------------- a store
FORMATS: dict[str, str] = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha"}
"""``spine export --format``: NIfTI through nibabel (RAS), NRRD and MetaImage through SimpleITK (LPS)."""
POINTS_NAME = "points.csv"
"""The points table written beside each study's images."""
POINT_KEYS = ("study_id", "series_id", "stack")
"""Columns that tie a point to one stack (the store's labels and ``spine locate``'s coords have them)."""
WORLD_COLUMNS = ("world_x", "world_y", "world_z")


@dataclass
class ExportResult:
    """What ``export_store`` wrote: image files, point rows, and stacks left out (with the reason)."""

    images: list[str]
    points: int
    skipped: list[str]


def _write(image: ExportImage, path, fmt: str) -> None:
    if fmt == "nifti":
        nib = import_extra("nibabel", "NIfTI export")
        nib.save(nifti_image(image), str(path))
    else:
        sitk = import_extra("SimpleITK", "SimpleITK export")
        sitk.WriteImage(sitk_image(image), str(path), True)


def _points_of_stack(points: pd.DataFrame | None, study_id: str, series_id: str, index: int) -> pd.DataFrame | None:
    if points is None or points.empty:
        return None
    mine = points[(points["study_id"] == study_id) & (points["series_id"] == series_id) & (points["stack"] == index)]
    return mine if len(mine) else None


def read_points(points: pd.DataFrame) -> pd.DataFrame:
    """A points table (the store's labels or ``spine locate``'s coords) with ids as text and ``stack`` as
    int; ``ExportError`` when a column of ``POINT_KEYS`` or ``WORLD_COLUMNS`` is missing."""
    missing = [c for c in (*POINT_KEYS, *WORLD_COLUMNS) if c not in points.columns]
    if missing:
        raise ExportError(f"the points table lacks the column(s) {missing}; expected those of the store's "
                          "labels or of `spine locate`'s coords")  # fmt: skip
    out = points.copy()
    for column in ("study_id", "series_id"):
        out[column] = out[column].astype(str)
    out["stack"] = np.asarray(out["stack"], dtype=np.float64).astype(np.int64)
    return out


def export_store(dataset, out, *, fmt: str = "nifti", study_ids=None, resample: bool = False,
                 points: pd.DataFrame | None = None, progress=None) -> ExportResult:
    """Write every stack of ``study_ids`` (default: every complete study) of an opened store as
    ``out/<study>/<series>_<stack><ext>`` (``FORMATS``), and per study ``out/<study>/points.csv``: the rows
    of ``points`` (default: the store's labels) on its exported stacks, with the image's file name and
    ``POINT_COLUMNS``. Irregular stacks are resampled with ``resample``, else left out and named in
    ``skipped``. Ids are checked (``StoreError``) before anything is written."""
    from pathlib import Path

    import pandas as pd

    from spinedata.ids import check_id

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
    import_extra("nibabel" if fmt == "nifti" else "SimpleITK", f"{fmt} export")
    ids = list(dataset.study_ids) if not study_ids else [check_id("study id", str(s)) for s in study_ids]
    studies = [dataset.study(s) for s in ids]  # StoreError for an id not in the store, before any writing
    if points is None:
        points = dataset.labels if dataset.split != "test" else None
    points = None if points is None else read_points(points)
    out = Path(out)
    result = ExportResult([], 0, [])
    for study in studies:
        folder = out / study.study_id
        tables = []
        for series in study.series.values():
            for stack in series.stacks:
                try:
                    image = export_image(stack, resample=resample)
                except ExportError as error:
                    result.skipped.append(str(error))
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{series.series_id}_{stack.index}{FORMATS[fmt]}"
                _write(image, path, fmt)
                result.images.append(str(path))
                mine = _points_of_stack(points, study.study_id, series.series_id, stack.index)
                if mine is not None:
                    table = points_table(image, mine)
                    table.insert(0, "image", path.name)
                    table.insert(1, "resampled", image.resampled)
                    tables.append(table)
                if progress is not None:
                    progress(str(path))
        if tables:
            frame = pd.concat(tables, ignore_index=True)
            frame.to_csv(folder / POINTS_NAME, index=False)
            result.points += len(frame)
    return result
