"""Our stacks agree with dcm2niix, the reference converter: identical pixels, affines within 1e-3 mm.

Every stack is turned into RAS (``diag(-1,-1,1,1) @ A``) with its array in NIfTI axis order
(x = col, y = row, z = slice), both sides are brought to the closest canonical orientation and compared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.uid import RLELossless

from spinedata.dicom import read_header, read_headers, read_pixels, read_stack
from spinedata.errors import DicomReadError
from spinedata.geometry import lps_to_ras
from spinedata.stacks import build_stacks
from tests.helpers.dicom_writer import spatial_order, write_enhanced, write_series
from tests.helpers.testdata import dicom_case

AFFINE_ATOL_MM = 1e-3
"""dcm2niix stores its affine as float32: agreement to about 1e-3 mm."""
DCM2NIIX_VARIANTS = ("_Tilt_", "_Eq_")
"""dcm2niix's resampled extras (gantry-tilt corrected, equidistant): not the acquired grid."""

pytestmark = pytest.mark.testdata


def _dcm2niix() -> str:
    for candidate in (Path(sys.executable).with_name("dcm2niix"), shutil.which("dcm2niix")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("dcm2niix not installed (pip install dcm2niix)")


def _convert(folder: Path, out: Path) -> list[nib.Nifti1Image]:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [_dcm2niix(), "-z", "n", "-f", "%s_%p", "-o", str(out), str(folder)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(p for p in out.glob("*.nii") if not any(v in p.name for v in DCM2NIIX_VARIANTS))
    return [nib.load(p) for p in files]


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return np.asanyarray(image.dataobj), image.affine


def _nifti_order(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``(slice,row,col)`` stack with its LPS affine -> NIfTI order ``(x=col, y=row, z=slice)`` and RAS."""
    return volume.transpose(2, 1, 0), lps_to_ras(affine)[:, [2, 1, 0, 3]]


def _ours(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Our stacks of a folder as canonical RAS ``(data (x,y,z), affine)``."""
    headers = [h for p in sorted(folder.iterdir()) if p.is_file() for h in read_headers(p)]
    stacks, skipped = build_stacks(headers)
    assert skipped == []
    return [_canonical(*_nifti_order(read_stack(piece), g.affine)) for g, piece in stacks]


def _theirs(images: list[nib.Nifti1Image]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for image in images:
        data = np.asanyarray(image.dataobj)
        if data.ndim == 2:
            data = data[:, :, None]
        out.append(_canonical(data, image.affine))
    return out


def _assert_agree(ours, theirs) -> None:
    assert len(ours) == len(theirs), f"{len(ours)} stacks vs {len(theirs)} dcm2niix volumes"
    unmatched = list(theirs)
    for data, affine in ours:
        match = [
            k
            for k, (d, a) in enumerate(unmatched)
            if d.shape == data.shape and np.array_equal(d.astype(np.float64), data.astype(np.float64))
        ]
        assert len(match) == 1, f"stack {data.shape} has {len(match)} pixel-identical dcm2niix volumes"
        _, their_affine = unmatched.pop(match[0])
        np.testing.assert_allclose(affine, their_affine, atol=AFFINE_ATOL_MM)


@pytest.mark.parametrize(
    "case",
    [
        "dcm_qa_decubitus/HFS_t1_sag",
        "dcm_qa_decubitus/HFP_t1_sag",
        "dicom2nifti/anatomical/001",
        "dicom2nifti/ge/anatomical/001",
        "dicom2nifti/hitachi/anatomical/001",
        "dicom2nifti/hitachi/anatomical/001_implicit",
        "dicom2nifti/generic/compressed/001",
        "dicom2nifti/generic/compressed_j2k/001",
        "dicom2nifti/generic/compressed_jpeg/001",
        "dicom2nifti/generic/compressed_jpegls/001",
        "dicom2nifti/generic/compressed_rle/001",
        "dicom2nifti/failing/slicecount/001",
        "dicom2nifti/failing/sliceorientation/001",
    ],
)
def test_series_agree_with_dcm2niix(testdata_dir, tmp_path, case):
    folder = dicom_case(testdata_dir, case)
    _assert_agree(_ours(folder), _theirs(_convert(folder, tmp_path)))


def test_single_slice_agrees_with_dcm2niix(testdata_dir, tmp_path):
    """One slice without SpacingBetweenSlices/SliceThickness: both use a 1 mm step along n (ours flagged)."""
    folder = dicom_case(testdata_dir, "dicom2nifti/ge/anatomical/001_single_slice")
    (geometry, _), *rest = build_stacks([read_header(p) for p in folder.iterdir()])[0]
    assert rest == [] and geometry.flags == ("single_slice", "default_spacing")
    _assert_agree(_ours(folder), _theirs(_convert(folder, tmp_path)))


@pytest.mark.parametrize("transfer_syntax", [None, RLELossless], ids=["native", "rle"])
@pytest.mark.parametrize("case", ["dcm_qa_decubitus/HFP_t1_sag", "dicom2nifti/anatomical/001"])
def test_enhanced_multiframe_agrees_with_dcm2niix_and_its_classic_series(testdata_dir, tmp_path, case,
                                                                          transfer_syntax):
    """A real series rewritten as one Enhanced MR file (positions in the per-frame functional groups): our
    stack equals dcm2niix's conversion of that file, and our stack of the original single-frame files
    (pixels identical, affine within 1e-6 mm). dcm2niix is compared with the frames stored in order along
    the normal: in a shuffled order it takes the slice step from the first and last frame as stored (and
    leaves compressed frames unsorted), so that case is checked against the classic series only."""
    files = sorted(dicom_case(testdata_dir, case).iterdir())
    ((classic_data, classic_affine),) = _ours(testdata_dir / "dicom" / case)
    shuffled = np.random.default_rng(0).permutation(len(files))
    for name, order in (("in_order", spatial_order(files)), ("shuffled", shuffled)):
        folder = tmp_path / name
        folder.mkdir()
        write_enhanced(files, folder / "multiframe.dcm", frame_order=order, transfer_syntax=transfer_syntax)
        ours = _ours(folder)
        if name == "in_order":
            _assert_agree(ours, _theirs(_convert(folder, tmp_path / "nii")))
        ((data, affine),) = ours
        np.testing.assert_array_equal(data, classic_data)
        np.testing.assert_allclose(affine, classic_affine, atol=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom's remarks on the test files' names and values
@pytest.mark.parametrize("case", ["dcm_qa_decubitus/HFS_t1_sag", "dicom2nifti/anatomical/001",
                                  "dicom2nifti/hitachi/anatomical/001"])
def test_legacy_converted_enhanced_mr_from_highdicom(testdata_dir, tmp_path, case):
    """A multi-frame file written by another library: highdicom's Legacy Converted Enhanced MR Image of a
    real series. Our stack equals the one of the original files and agrees with dcm2niix on the file."""
    import pydicom
    from highdicom.legacy import LegacyConvertedEnhancedMRImage  # a dev dependency (pyproject.toml)
    from pydicom.uid import generate_uid

    files = sorted(dicom_case(testdata_dir, case).iterdir())
    image = LegacyConvertedEnhancedMRImage(
        [pydicom.dcmread(f) for f in files], series_instance_uid=generate_uid(), series_number=900,
        sop_instance_uid=generate_uid(), instance_number=1,
    )  # fmt: skip
    folder = tmp_path / "converted"
    folder.mkdir()
    image.save_as(folder / "multiframe.dcm")
    ours = _ours(folder)
    _assert_agree(ours, _theirs(_convert(folder, tmp_path / "nii")))
    ((data, affine),) = ours
    ((classic_data, classic_affine),) = _ours(testdata_dir / "dicom" / case)
    np.testing.assert_array_equal(data, classic_data)
    np.testing.assert_allclose(affine, classic_affine, atol=1e-6)


MOSAIC_TILES = 35
"""dcm_qa_ts holds a Siemens mosaic: 35 axial 64x64 slices tiled 6 x 6 in one 384x384 image."""


def _demosaic(image: np.ndarray, n_tiles: int) -> np.ndarray:
    per_row = int(np.ceil(np.sqrt(n_tiles)))
    size = image.shape[0] // per_row
    return np.stack(
        [image[(k // per_row) * size :][:size, (k % per_row) * size :][:, :size] for k in range(n_tiles)]
    )


@pytest.mark.parametrize("index", range(1, 10))
def test_transfer_syntaxes_decode_like_reference_nifti(testdata_dir, index):
    """dcm_qa_ts: one image in nine transfer syntaxes (raw LE/BE, implicit, RLE, JPEG lossless, JPEG-LS,
    JPEG 2000) decodes to dcm2niix's stored NIfTI, tile by tile. The file is a Siemens mosaic, which
    ``read_header`` rejects with a clear reason, so only the pixels are compared here."""
    root = dicom_case(testdata_dir, "dcm_qa_ts")
    with pytest.raises(DicomReadError, match="mosaic"):
        read_header(root / "In" / f"{index}.dcm")
    pixels = read_pixels(root / "In" / f"{index}.dcm")
    assert pixels.dtype == np.uint16 and pixels.shape == (384, 384)
    np.testing.assert_array_equal(pixels, read_pixels(root / "In" / "1.dcm"))
    tiles = _demosaic(pixels, MOSAIC_TILES)
    reference = np.asanyarray(nib.load(root / "Ref" / f"{index}.nii").dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(tiles, np.flip(reference, 1))  # dcm2niix stores rows bottom-up


@pytest.mark.parametrize(
    "pixel_spacing, rows, cols, angles",
    [((0.5, 0.8), 24, 32, (10.0, -20.0, 5.0)), ((1.2, 0.4), 40, 18, (90.0, 0.0, 90.0))],
)
def test_non_square_pixels_agree_with_dcm2niix(tmp_path, pixel_spacing, rows, cols, angles):
    """Swapping drow/dcol is silent for square pixels: a synthetic oblique series with non-square ones."""
    folder = tmp_path / "dicom"
    volume, affine, _ = write_series(
        folder, 6, rows=rows, cols=cols, pixel_spacing=pixel_spacing, angles_deg=angles, slice_step=2.5
    )
    (geometry, piece), *_ = build_stacks([read_header(p) for p in folder.iterdir()])[0]
    np.testing.assert_array_equal(read_stack(piece), volume)
    np.testing.assert_allclose(geometry.affine, affine, atol=1e-5)
    _assert_agree(_ours(folder), _theirs(_convert(folder, tmp_path / "nii")))


def _volumes(images: list[nib.Nifti1Image]) -> list[nib.Nifti1Image]:
    """4D NIfTIs (dcm2niix puts repeated one-slice volumes in one file) as 3D volumes."""
    out = []
    for image in images:
        if image.ndim == 4:
            out.extend(image.slicer[..., k] for k in range(image.shape[3]))
        else:
            out.append(image)
    return out


@pytest.mark.parametrize(
    "case, slice_column",
    [
        ("gantrytilting/001", (0, 0, 5.0)),  # the true table step; dcm2niix: 4.85 mm along z
        ("sliceincrement/001", (0, 0, 20.0 / 3)),  # first-to-last mean over a missing slice; dcm2niix: 5 mm
        ("notavolume/001", (0, 0, 1.0)),  # four one-slice stacks, 1 mm like dcm2niix's 4D file
    ],
)
def test_failing_cases_match_dcm2niix_pixels_and_in_plane_geometry(
    testdata_dir, tmp_path, case, slice_column
):
    """Where the slice axis is irregular we keep dcm2niix's pixels, in-plane axes and origin, and our own
    (documented) slice column; dcm2niix's resampled extras (_Tilt_, _Eq_) are not the acquired grid."""
    folder = dicom_case(testdata_dir, f"dicom2nifti/failing/{case}")
    ours = _ours(folder)
    theirs = _theirs(_volumes(_convert(folder, tmp_path)))
    assert len(ours) == len(theirs)
    for (data, affine), (their_data, their_affine) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(data, their_data)
        np.testing.assert_allclose(affine[:3, [0, 1, 3]], their_affine[:3, [0, 1, 3]], atol=AFFINE_ATOL_MM)
        np.testing.assert_allclose(affine[:3, 2], slice_column, atol=1e-4)  # axial: RAS z = LPS z
