"""The fast header scan (``spinedata.dicom.fastscan``) gives exactly the header pydicom's path gives, or steps aside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from spinedata.dicom import HEADER_ELEMENTS, SCAN_TAGS, SliceHeader, read_header, read_pixels
from spinedata.dicom.dataset import corrupt_file_errors
from spinedata.dicom.fastscan import scan
from spinedata.dicom.headers import _header_from_scan, _read_header
from spinedata.errors import DicomReadError
from tests.helpers.dicom_writer import write_slice

GEOMETRY = {"position": (-10.0, 20.0, 30.0), "orientation": (1, 0, 0, 0, 1, 0), "pixel_spacing": (0.7, 0.8)}


def _both(path: Path):
    """``(scan result, pydicom result)``: a SliceHeader, the DicomReadError message, or None (scan declined)."""
    scanned = scan(path, SCAN_TAGS)
    fast = None
    if scanned is not None:
        try:
            fast = _header_from_scan(str(path), scanned)
        except DicomReadError as error:
            fast = str(error)
    try:
        slow = _read_header(str(path))
    except DicomReadError as error:
        slow = str(error)
    except corrupt_file_errors() as error:
        slow = f"corrupt header ({type(error).__name__}: {error})"
    return fast, slow


def test_header_elements_match_the_dicom_dictionary():
    for keyword, (tag, vr) in HEADER_ELEMENTS.items():
        assert tag_for_keyword(keyword) == tag, keyword
        assert dictionary_VR(tag) == vr, keyword


def test_scan_agrees_with_pydicom_on_every_test_file(testdata_dir):
    files = sorted(p for p in (testdata_dir / "dicom").rglob("*") if p.is_file())
    scanned = {}
    for path in files:
        fast, slow = _both(path)
        if fast is not None:
            assert fast == slow, path
            scanned[path] = fast
    syntaxes = {h.transfer_syntax for h in scanned.values() if isinstance(h, SliceHeader)}
    # explicit and implicit little endian, and encapsulated (JPEG, JPEG-LS, JPEG 2000, RLE) files are scanned
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"} <= syntaxes
    assert len(syntaxes) >= 5, syntaxes
    assert len(scanned) >= 50  # the subset bundled in tests/data has 51 such files; ../shared/testdata over 100


def test_scan_reads_through_undefined_length_sequences(tmp_path):
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    inner = Dataset()
    inner.CodeValue = "X"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    extra = {"ReferencedImageSequence": Sequence([item, Dataset()])}
    path = write_slice(tmp_path / "a.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4), study_uid="1.2",
                       series_uid="1.2.3", extra=extra, **GEOMETRY)  # fmt: skip
    ds = pydicom.dcmread(path)
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence[0]["PurposeOfReferenceCodeSequence"].is_undefined_length = True
    ds.save_as(path)
    assert b"\xfe\xff\xdd\xe0" in path.read_bytes()  # a sequence delimiter: the lengths are undefined
    fast, slow = _both(path)
    assert isinstance(fast, SliceHeader) and fast == slow
    assert fast.position == GEOMETRY["position"] and (fast.rows, fast.cols) == (3, 4)
    np.testing.assert_array_equal(read_pixels(fast), np.arange(12).reshape(3, 4))


@pytest.mark.parametrize("undefined", [False, True])
def test_scan_reads_headers_longer_than_its_first_read(tmp_path, undefined):
    """Headers of many KiB (a long sequence before Rows/Columns, cut by the first read and again later)
    are read in steps, the walk going on where the bytes ran out: the same header as pydicom's."""
    items = []
    for k in range(600):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        item.ReferencedSOPInstanceUID = f"1.2.3.4.5.6.7.8.9.{k}"
        items.append(item)
    path = write_slice(tmp_path / "long.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4), study_uid="1.2",
                       series_uid="1.2.3", extra={"ReferencedImageSequence": Sequence(items),
                                                  "ImageComments": "x" * 9000}, **GEOMETRY)  # fmt: skip
    if undefined:
        ds = pydicom.dcmread(path)
        ds["ReferencedImageSequence"].is_undefined_length = True
        for item in ds.ReferencedImageSequence:
            item.is_undefined_length_sequence_item = True
        ds.save_as(path)
    assert path.stat().st_size > 4 * 8192
    fast, slow = _both(path)
    assert isinstance(fast, SliceHeader) and fast == slow
    assert (fast.rows, fast.cols) == (3, 4) and fast.pixel_offset > 4 * 8192


def test_scan_reads_implicit_vr_and_declines_what_it_does_not_know(tmp_path):
    path = write_slice(tmp_path / "a.dcm", np.ones((2, 2), np.uint16), study_uid="1.2", series_uid="1.2.3",
                       **GEOMETRY)  # fmt: skip
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(tmp_path / "implicit.dcm", implicit_vr=True, little_endian=True)
    fast, slow = _both(tmp_path / "implicit.dcm")
    assert isinstance(fast, SliceHeader) and fast == slow
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 144"  # Cyrillic: left to pydicom's decoders
    ds.SeriesDescription = "сагиттальный"
    ds.save_as(tmp_path / "cyrillic.dcm")
    fast, slow = _both(tmp_path / "cyrillic.dcm")
    assert fast is None and slow.series_description == "сагиттальный"
    assert read_header(tmp_path / "cyrillic.dcm") == slow
    (tmp_path / "text.dcm").write_bytes(b"not a dicom file at all" * 10)
    assert scan(tmp_path / "text.dcm", SCAN_TAGS) is None


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("fuzz")
    extra = {"ReferencedImageSequence": Sequence([Dataset()]), "ImageType": ["ORIGINAL", "PRIMARY"]}
    path = write_slice(folder / "a.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8), study_uid="1.2",
                       series_uid="1.2.3", extra=extra, slice_thickness=3.0, rescale=(2.0, -5.0),
                       **GEOMETRY)  # fmt: skip
    return path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_never_crash_and_both_readers_agree(tmp_path, sample_file, data):
    raw = bytearray(sample_file)
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))] if data.draw(st.booleans()) else raw
    path = tmp_path / "damaged.dcm"
    path.write_bytes(bytes(raw))
    try:
        header = read_header(path)
    except DicomReadError:
        header = None
    fast, slow = _both(path)
    if isinstance(fast, SliceHeader) and isinstance(slow, SliceHeader):
        assert fast == slow
    if header is not None:
        assert header in (fast, slow)
