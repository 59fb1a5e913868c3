"""read_header / read_pixels / read_stack: precise reasons for bad files, rescale and dtype rules."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import RLELossless

from spinedata.dicom import (
    SliceHeader,
    common_dtype,
    read_header,
    read_headers,
    read_pixels,
    read_stack,
    read_stack_stored,
)
from spinedata.dicom.rescale import _whole_rescaled
from spinedata.errors import DicomReadError, MultiFrameFile
from spinedata.stacks import build_stacks
from tests.conftest import BUNDLED_TESTDATA
from tests.helpers.dicom_writer import write_enhanced, write_series, write_slice

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _write(path, pixels=None, **kwargs):
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) if pixels is None else pixels
    options = dict(position=(1.0, 2.0, 3.0), orientation=AXIAL, pixel_spacing=(0.5, 0.7))
    options.update(kwargs)
    return write_slice(path, pixels, series_uid="1.2.3", study_uid="1.2", **options)


def test_header_fields(tmp_path):
    path = _write(
        tmp_path / "a.dcm",
        instance_number=7,
        slice_thickness=3.0,
        spacing_between_slices=3.5,
        extra={"EchoNumbers": 2, "AcquisitionNumber": 4, "TemporalPositionIdentifier": 5,
               "ImageType": ["DERIVED", "primary", "DIXON", "W"]},
    )
    header = read_header(path)
    assert isinstance(header, SliceHeader)
    assert header.image_type == "DERIVED\\PRIMARY\\DIXON\\W"
    assert (header.study_uid, header.series_uid, header.series_description) == ("1.2", "1.2.3", "synthetic")
    assert header.instance_number == 7 and header.position == (1.0, 2.0, 3.0)
    assert header.orientation == AXIAL and header.pixel_spacing == (0.5, 0.7)
    assert (header.rows, header.cols) == (3, 4)
    assert (header.slice_thickness, header.spacing_between_slices) == (3.0, 3.5)
    assert (header.echo_number, header.acquisition_number, header.temporal_position) == (2, 4, 5)
    assert (header.rescale_slope, header.rescale_intercept) == (1.0, 0.0)
    assert header.transfer_syntax == pydicom.uid.ExplicitVRLittleEndian
    assert header.sop_uid and header.path == str(path)


def test_orientation_is_normalised_in_header(tmp_path):
    header = read_header(_write(tmp_path / "a.dcm", orientation=(1.002, 0, 0, 0, 0.998, 0)))
    assert np.allclose(np.linalg.norm(header.orientation[:3]), 1) and header.orientation[4] == pytest.approx(
        1
    )


def _cases(tmp_path):
    good = _write(tmp_path / "good.dcm")
    raw = good.read_bytes()
    (tmp_path / "text.dcm").write_text("hello, not an image\n")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "cut_header.dcm").write_bytes(raw[:400])
    (tmp_path / "cut_pixels.dcm").write_bytes(raw[:-5])
    ds = pydicom.dcmread(good)
    del ds.ImagePositionPatient
    ds.save_as(tmp_path / "no_ipp.dcm")
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "no_pixels.dcm")
    ds = pydicom.dcmread(good)
    del ds.PixelSpacing
    ds.save_as(tmp_path / "no_spacing.dcm")
    ds = pydicom.dcmread(good)
    ds.ImageOrientationPatient = [1, 0, 0, 0.1, 0.995, 0]
    ds.save_as(tmp_path / "skew.dcm")
    ds = pydicom.dcmread(good)
    ds.NumberOfFrames = 3
    ds.save_as(tmp_path / "frames.dcm")
    ds = pydicom.dcmread(good)
    ds.PhotometricInterpretation = "RGB"
    ds.save_as(tmp_path / "rgb.dcm")
    ds = pydicom.dcmread(good)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
    ds.save_as(tmp_path / "mosaic.dcm")
    ds = pydicom.dcmread(good)
    ds.ImagePositionPatient = [1, 2]
    ds.save_as(tmp_path / "short_ipp.dcm")
    ds = pydicom.dcmread(good)
    ds.RescaleSlope, ds.RescaleIntercept = 0, 0
    ds.save_as(tmp_path / "zero_slope.dcm")
    return tmp_path


@pytest.mark.parametrize(
    "name, reason",
    [
        ("text.dcm", "not a DICOM file"),
        ("empty.dcm", "not a DICOM file"),
        ("cut_header.dcm", "no pixel data .*truncated"),
        ("cut_pixels.dcm", "truncated pixel data"),
        ("no_ipp.dcm", "no ImagePositionPatient"),
        ("no_pixels.dcm", "no pixel data"),
        ("no_spacing.dcm", "no PixelSpacing"),
        ("skew.dcm", "not orthogonal"),
        ("frames.dcm", "multi-frame file \\(3 frames\\)"),
        ("rgb.dcm", "RGB is not a grey-scale"),
        ("mosaic.dcm", "mosaic"),
        ("short_ipp.dcm", "ImagePositionPatient must be 3"),
        ("missing.dcm", "cannot open file"),
        ("zero_slope.dcm", "invalid rescale: RescaleSlope 0"),
    ],
)
def test_bad_files_give_precise_reasons(tmp_path, name, reason):
    folder = _cases(tmp_path)
    with pytest.raises(DicomReadError, match=reason):
        read_header(folder / name)


def test_preamble_less_dataset_is_read(tmp_path):
    """A bare dataset without the 128-byte preamble and 'DICM' (old writers) is still an image."""
    ds = pydicom.dcmread(_write(tmp_path / "good.dcm"))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    (tmp_path / "bare.dcm").write_bytes(fp.getvalue())
    assert not (tmp_path / "bare.dcm").read_bytes()[128:132] == b"DICM"
    header = read_header(tmp_path / "bare.dcm")
    assert header.position == (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(read_pixels(header), np.arange(12).reshape(3, 4))


def test_identity_rescale_keeps_stored_dtype(tmp_path):
    pixels = np.array([[0, 65535], [7, 9]], dtype=np.uint16)
    out = read_pixels(_write(tmp_path / "a.dcm", pixels))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, pixels)


def test_integer_rescale_stays_exact_integer(tmp_path):
    pixels = np.array([[0, 3000], [24, 1024]], dtype=np.uint16)
    out = read_pixels(_write(tmp_path / "ct.dcm", pixels, rescale=(1, -1024)))
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, pixels.astype(np.int64) - 1024)


@pytest.mark.parametrize(("rescale", "dtype"), [((1, -1024), np.int16), ((3, -100), np.int32), ((2, 5), np.uint16)])
def test_a_stack_with_one_whole_number_rescale_equals_its_slices(tmp_path, rescale, dtype):
    """read_stack converts such a stack at once: the values and the dtype the slices give one by one."""
    rng = np.random.default_rng(3)
    slices = [rng.integers(0, 4096, (3, 4)).astype(np.uint16) for _ in range(4)]
    slices[0][0, 0] = 30000  # one slice alone decides the dtype of the stack
    headers = [read_header(_write(tmp_path / f"{k}.dcm", pixels, rescale=rescale, position=(0.0, 0.0, float(k))))
               for k, pixels in enumerate(slices)]  # fmt: skip
    stack = read_stack(headers)
    values = np.stack(slices).astype(np.int64) * rescale[0] + rescale[1]
    assert stack.dtype == dtype
    np.testing.assert_array_equal(stack, values)
    for k, header in enumerate(headers):
        np.testing.assert_array_equal(read_pixels(header), values[k])


def test_fractional_rescale_gives_float32(tmp_path):
    pixels = np.array([[0, 10], [20, 30]], dtype=np.uint16)
    out = read_pixels(_write(tmp_path / "a.dcm", pixels, rescale=(0.5, 1.25)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, pixels * 0.5 + 1.25)


def test_signed_pixels(tmp_path):
    pixels = np.array([[-5, 0], [100, -32768]], dtype=np.int16)
    out = read_pixels(_write(tmp_path / "a.dcm", pixels))
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, pixels)


def test_monochrome1_is_inverted_so_bright_is_high(tmp_path):
    pixels = np.array([[0, 1], [65534, 65535]], dtype=np.uint16)
    out = read_pixels(_write(tmp_path / "a.dcm", pixels, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(out, 65535 - pixels.astype(np.int64))


def test_big_endian_comes_back_native(tmp_path):
    ds = pydicom.dcmread(_write(tmp_path / "a.dcm", np.array([[1, 258]], dtype=np.uint16)))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    ds.PixelData = np.array([[1, 258]], dtype=">u2").tobytes()
    pydicom.dcmwrite(tmp_path / "be.dcm", ds, implicit_vr=False, little_endian=False, force_encoding=True)
    out = read_pixels(tmp_path / "be.dcm")
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, [[1, 258]])


def test_read_stack_common_dtype_and_order(tmp_path):
    volume, _, paths = write_series(tmp_path, 3, rows=5, cols=6)
    headers = [read_header(p) for p in paths]
    np.testing.assert_array_equal(read_stack(headers[::-1]), volume[::-1])
    # one slice rescaled to negatives: the whole stack moves to a signed type, values exact
    extra = _write(tmp_path / "neg.dcm", np.full((5, 6), 10, dtype=np.uint16), rescale=(1, -20))
    stack = read_stack([*headers, read_header(extra)])
    assert stack.dtype == np.int16 and stack[-1].min() == -10
    np.testing.assert_array_equal(stack[:3], volume)


def test_read_stack_rejects_mixed_matrix(tmp_path):
    a = read_header(_write(tmp_path / "a.dcm", np.zeros((3, 4), dtype=np.uint16)))
    b = read_header(_write(tmp_path / "b.dcm", np.zeros((4, 4), dtype=np.uint16)))
    with pytest.raises(DicomReadError, match="share Rows x Columns"):
        read_stack([a, b])
    with pytest.raises(DicomReadError, match="at least one"):
        read_stack([])


def test_pixels_of_a_deleted_file(tmp_path):
    header = read_header(_write(tmp_path / "a.dcm"))
    (tmp_path / "a.dcm").unlink()
    with pytest.raises(DicomReadError, match="disappeared"):
        read_pixels(header)


@pytest.mark.parametrize(
    "ranges, expected",
    [
        ([(0, 4000)], np.uint16),
        ([(-5, 4000)], np.int16),
        ([(0, 70000)], np.int32),
        ([(-(2**33), 0)], np.float32),
    ],
)
def test_common_dtype_rules(ranges, expected):
    arrays = [np.array(r, dtype=np.int64) for r in ranges]
    assert common_dtype(arrays, [np.dtype(np.uint16)]) == expected


def test_common_dtype_float():
    assert common_dtype([np.array([0.5])], [np.dtype(np.uint16)]) == np.float32


def test_native_fast_path_matches_pydicom(tmp_path):
    """``read_pixels(header)`` reads native pixels at the offset found by ``read_header``; it must give
    exactly pydicom's values, including masked high bits, sign extension and MONOCHROME1."""
    cases = {
        "masked.dcm": (
            np.array([[0xF00F, 0x0FFF]], dtype=np.uint16),
            {"BitsStored": 12, "HighBit": 11},
            "MONOCHROME2",
        ),
        "signed.dcm": (
            np.array([[0x0FFF, 0x07FF, -1]], dtype=np.int16),
            {"BitsStored": 12, "HighBit": 11},
            "MONOCHROME2",
        ),
        "mono1.dcm": (
            np.array([[0, 5, 4095]], dtype=np.uint16),
            {"BitsStored": 12, "HighBit": 11},
            "MONOCHROME1",
        ),
        "mono1s.dcm": (
            np.array([[-2048, 0, 2047]], dtype=np.int16),
            {"BitsStored": 12, "HighBit": 11},
            "MONOCHROME1",
        ),
    }
    for name, (pixels, extra, photometric) in cases.items():
        path = _write(tmp_path / name, pixels, extra=extra, photometric=photometric)
        header = read_header(path)
        assert header.pixel_offset > 0 and header.pixel_dtype in ("<u2", "<i2")
        from_header, from_path = read_pixels(header), read_pixels(path)  # fast path / pydicom
        assert from_header.dtype == from_path.dtype
        np.testing.assert_array_equal(from_header, from_path)
    np.testing.assert_array_equal(read_pixels(tmp_path / "masked.dcm"), [[0x00F, 0xFFF]])
    np.testing.assert_array_equal(read_pixels(tmp_path / "signed.dcm"), [[-1, 2047, -1]])
    np.testing.assert_array_equal(read_pixels(tmp_path / "mono1.dcm"), [[4095, 4090, 0]])
    np.testing.assert_array_equal(read_pixels(tmp_path / "mono1s.dcm"), [[2047, -1, -2048]])


@pytest.mark.testdata
def test_fast_path_equals_pydicom_on_all_test_data(testdata_dir):
    """Every readable test file: header-offset pixels == pydicom-decoded pixels (native and compressed)."""
    checked = 0
    for path in sorted((testdata_dir / "dicom").rglob("*.dcm")):
        try:
            header = read_header(path)
        except DicomReadError:
            continue
        np.testing.assert_array_equal(read_pixels(header), read_pixels(path))
        checked += 1
    assert checked >= (40 if testdata_dir == BUNDLED_TESTDATA else 100)  # the bundled subset holds 43


FUZZ_CASES = 150


def _corrupt(raw: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(raw)
    kind = rng.integers(3)
    if kind == 0:
        return bytes(data[: rng.integers(len(data))])
    span = len(data) if kind == 1 else min(len(data), 1500)  # anywhere, or inside the header
    for _ in range(rng.integers(1, 12)):
        data[rng.integers(span)] = rng.integers(256)
    return bytes(data)


@pytest.mark.filterwarnings("ignore")  # pydicom warns about the damaged values it meets
def test_damaged_files_give_reasons_never_tracebacks(tmp_path, testdata_dir):
    """Flipped and cut bytes in real files (native and JPEG): a header and pixels, or a DicomReadError."""
    sources = [
        _write(tmp_path / "native.dcm", np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)).read_bytes(),
        next((testdata_dir / "dicom/dicom2nifti/generic/compressed_jpeg/001").glob("*.dcm")).read_bytes(),
    ]
    outcomes = _fuzz(tmp_path, sources, 7, lambda path: read_pixels(read_header(path)))
    assert outcomes["read"] > 0 and outcomes["reason"] > 0


def _fuzz(tmp_path, sources: list[bytes], seed: int, read) -> dict[str, int]:
    """``read`` each of FUZZ_CASES damaged copies of ``sources``: it reads, or raises DicomReadError with a
    reason (anything else fails the test). Returns how often each happened."""
    rng = np.random.default_rng(seed)
    outcomes = {"read": 0, "reason": 0}
    for k in range(FUZZ_CASES):
        path = tmp_path / f"fuzz{k}.dcm"
        path.write_bytes(_corrupt(sources[k % len(sources)], rng))
        try:
            read(path)
            outcomes["read"] += 1
        except DicomReadError as error:
            assert str(error)
            outcomes["reason"] += 1
    return outcomes


def test_read_stack_stored_keeps_integers_with_one_rescale(tmp_path):
    _, _, paths = write_series(tmp_path / "a", 3, rows=5, cols=6, rescale=(0.5, 1.25))
    headers = [read_header(p) for p in paths]
    stored, slope, intercept = read_stack_stored(headers)
    assert stored.dtype == np.uint16 and (slope, intercept) == (0.5, 1.25)
    rescaled = read_stack(headers)
    assert rescaled.dtype == np.float32
    np.testing.assert_array_equal((stored * slope + intercept).astype(np.float32), rescaled)


def test_read_stack_stored_identity_and_mixed_rescale(tmp_path):
    volume, _, paths = write_series(tmp_path / "a", 2, rows=5, cols=6)
    headers = [read_header(p) for p in paths]
    stored, slope, intercept = read_stack_stored(headers)
    np.testing.assert_array_equal(stored, volume)
    assert stored.dtype == np.uint16 and (slope, intercept) == (1.0, 0.0)
    odd = read_header(_write(tmp_path / "odd.dcm", np.ones((5, 6), np.uint16), rescale=(2, 0)))
    mixed, slope, intercept = read_stack_stored([*headers, odd])  # no single rescale: rescaled values
    assert (slope, intercept) == (1.0, 0.0)
    np.testing.assert_array_equal(mixed, read_stack([*headers, odd]))
    assert mixed[-1].max() == 2


def _enhanced(tmp_path, n_slices=5, **kwargs):
    """A classic series and the same slices as one Enhanced MR file (frames in a shuffled order)."""
    volume, affine, paths = write_series(tmp_path / "classic", n_slices, rows=6, cols=7)
    order = [3, 0, 4, 1, 2][:n_slices]
    path = write_enhanced(paths, tmp_path / "enhanced.dcm", frame_order=order, **kwargs)
    return volume, affine, paths, order, path


@pytest.mark.parametrize("transfer_syntax", [None, RLELossless], ids=["native", "rle"])
@pytest.mark.parametrize("shared_geometry", [True, False], ids=["shared", "per_frame"])
def test_multiframe_file_gives_one_header_per_frame(tmp_path, transfer_syntax, shared_geometry):
    volume, affine, paths, order, path = _enhanced(tmp_path, transfer_syntax=transfer_syntax,
                                                   shared_geometry=shared_geometry)  # fmt: skip
    with pytest.raises(MultiFrameFile, match="multi-frame file \\(5 frames\\): read its frames with read_headers"):
        read_header(path)
    headers = read_headers(path)
    assert [h.frame for h in headers] == list(range(5))
    assert [h.instance_number for h in headers] == [1, 2, 3, 4, 5]  # frame numbers
    assert len({h.sop_uid for h in headers}) == 1
    for header, k in zip(headers, order, strict=True):
        classic = read_header(paths[k])
        assert header.position == classic.position
        assert header.orientation == classic.orientation and header.pixel_spacing == classic.pixel_spacing
        assert (header.pixel_offset >= 0) == (transfer_syntax is None)
        np.testing.assert_array_equal(read_pixels(header), volume[k])
    (geometry, members), *rest = build_stacks(headers)[0]
    assert rest == [] and build_stacks(headers)[1] == []
    np.testing.assert_allclose(geometry.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(read_stack(members), volume)
    np.testing.assert_array_equal(geometry.instance_numbers, [order.index(k) + 1 for k in range(5)])


def test_multiframe_frame_types_and_temporal_indices_are_read_per_frame(tmp_path):
    """FrameType (MRImageFrameTypeSequence) and TemporalPositionIndex (FrameContentSequence) of each frame
    become its image_type and temporal_position."""
    *_, path = _enhanced(tmp_path)
    ds = pydicom.dcmread(path)
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        frame_type = pydicom.Dataset()
        frame_type.FrameType = ["DERIVED", "PRIMARY", "DIXON", "W" if k % 2 else "F"]
        item.MRImageFrameTypeSequence = pydicom.Sequence([frame_type])
        item.FrameContentSequence[0].TemporalPositionIndex = k + 10
    ds.save_as(tmp_path / "typed.dcm")
    headers = read_headers(tmp_path / "typed.dcm")
    assert [h.image_type[-1] for h in headers] == ["F", "W", "F", "W", "F"]
    assert [h.temporal_position for h in headers] == [10, 11, 12, 13, 14]
    assert headers[0].image_type == "DERIVED\\PRIMARY\\DIXON\\F"


def test_multiframe_echoes_at_the_same_positions_come_apart_by_their_dimension_index(tmp_path):
    """Two echoes in one file (DimensionIndexSequence: InStackPositionNumber, EffectiveEchoTime), stored
    with the echoes alternating which comes first at each position, so that frame order alone would mix
    them: the dimension index other than the place in the stack tells the two volumes apart."""
    first, affine, first_paths = write_series(tmp_path / "e1", 4, rows=6, cols=7, seed=1)
    second, _, second_paths = write_series(tmp_path / "e2", 4, rows=6, cols=7, seed=2)
    order = [k for j in range(4) for k in ((j, 4 + j) if j % 2 == 0 else (4 + j, j))]
    path = write_enhanced([*first_paths, *second_paths], tmp_path / "echoes.dcm", frame_order=order,
                          echoes=[1] * 4 + [2] * 4)  # fmt: skip
    headers = read_headers(path)
    assert [h.dimension_index for h in headers] == ["1", "2", "2", "1", "1", "2", "2", "1"]
    stacks, skipped = build_stacks(headers)
    assert skipped == [] and len(stacks) == 2
    for (geometry, members), volume in zip(stacks, (first, second), strict=True):
        np.testing.assert_allclose(geometry.affine, affine, atol=1e-6)
        np.testing.assert_array_equal(read_stack(members), volume)


def test_multiframe_file_with_two_orientations_gives_two_stacks(tmp_path):
    """A localizer-like file: frames of two orientations (per-frame geometry) -> one stack each."""
    sagittal, sag_affine, sag_paths = write_series(tmp_path / "sag", 3, rows=6, cols=7, angles_deg=(0, 90, 0))
    axial, ax_affine, ax_paths = write_series(tmp_path / "ax", 4, rows=6, cols=7, angles_deg=(0, 0, 0), seed=1)
    path = write_enhanced([*ax_paths, *sag_paths], tmp_path / "localizer.dcm", shared_geometry=False)
    stacks, skipped = build_stacks(read_headers(path))
    assert skipped == [] and len(stacks) == 2
    found = {g.shape[0]: (g, read_stack(m)) for g, m in stacks}
    for volume, affine in ((sagittal, sag_affine), (axial, ax_affine)):
        geometry, pixels = found[len(volume)]
        np.testing.assert_allclose(geometry.affine, affine, atol=1e-6)
        np.testing.assert_array_equal(pixels, volume)


def test_bad_multiframe_files_give_precise_reasons(tmp_path):
    _, _, _, _, path = _enhanced(tmp_path)
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence
    ds.save_as(tmp_path / "no_position.dcm")
    with pytest.raises(DicomReadError, match="without PlanePositionSequence"):
        read_headers(tmp_path / "no_position.dcm")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 4
    ds.save_as(tmp_path / "count.dcm")
    with pytest.raises(DicomReadError, match="4 frames but 5 items of PerFrameFunctionalGroupsSequence"):
        read_headers(tmp_path / "count.dcm")
    raw = path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[: len(raw) - 6 * 7 * 2 - 10])
    with pytest.raises(DicomReadError, match="truncated pixel data"):
        read_headers(tmp_path / "cut.dcm")
    (tmp_path / "cases").mkdir()
    with pytest.raises(DicomReadError, match="truncated pixel data: 24 bytes hold 1 of 3 frames"):
        read_headers(_cases(tmp_path / "cases") / "frames.dcm")  # NumberOfFrames 3 on a one-frame file


@pytest.mark.filterwarnings("ignore")  # pydicom warns about the damaged values it meets
def test_damaged_multiframe_files_give_reasons_never_tracebacks(tmp_path):
    sources = [_enhanced(tmp_path / name, transfer_syntax=syntax)[-1].read_bytes()
               for name, syntax in (("native", None), ("rle", RLELossless))]  # fmt: skip
    outcomes = _fuzz(tmp_path, sources, 11, lambda path: [read_pixels(h) for h in read_headers(path)])
    assert outcomes["read"] > 0 and outcomes["reason"] > 0


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.uint32]),
    slope=st.integers(-70_000, 70_000),
    intercept=st.integers(-(2**33), 2**33),
    seed=st.integers(0, 2**32 - 1),
)
def test_whole_number_rescale_matches_exact_arithmetic(dtype, slope, intercept, seed):
    """``_whole_rescaled`` (arithmetic in the result's type, wrapping on the way) gives exactly the values
    and the dtype of computing in Python integers and applying ``common_dtype``."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    stored = rng.integers(info.min, int(info.max) + 1, size=(2, 3, 4), dtype=np.int64).astype(dtype)
    stored.flat[0], stored.flat[1] = info.min, info.max  # the extremes of the stored type
    exact = np.array([int(v) * slope + intercept for v in stored.ravel()], dtype=object).reshape(stored.shape)
    lo, hi = int(exact.min()), int(exact.max())
    expected = common_dtype([np.array([lo, hi], dtype=object).astype(float) if hi >= 2**62 or lo < -(2**62)
                             else np.array([lo, hi], dtype=np.int64)], [stored.dtype])  # fmt: skip
    got = _whole_rescaled(stored, slope, intercept)
    assert got.dtype == expected
    if expected.kind in "iu":
        assert [int(v) for v in got.ravel()] == list(exact.ravel())
    else:
        np.testing.assert_allclose(got.astype(np.float64), exact.astype(np.float64), rtol=1e-6)
