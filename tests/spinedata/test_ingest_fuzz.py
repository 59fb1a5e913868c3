"""Hostile DICOM input (issue #14, ingest half): damaged, absurd or planted files never crash or hang ``spine
ingest``, and are never read as data. Each file is either ingested exactly or is a report line; nothing
else of its study is lost; the run, its labels table and its report always complete.

Direct tests for each finding, then structured and hypothesis-driven mutations of synthetic and real files
(``SPINE_TESTDATA`` respected, see conftest.py). Kept fast: small series, ``workers=1`` except where the
pool itself is tested.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless, generate_uid

import spinedata as sd
from spinedata.dicom import ReadLimits, pixels, read_headers, read_pixels
from spinedata.errors import DicomReadError, OutputPathError
from spinedata.ingest import ingest
from tests.helpers.dicom_writer import write_enhanced
from tests.helpers.ingest_data import write_competition_dataset, write_competition_series

REPO = Path(__file__).resolve().parents[2]
STUDY, SERIES = "1", "11"
BOUND_S = 20.0
"""Wall-clock bound of one small ingest, whatever its input (generous: the machine is shared)."""


@pytest.fixture(autouse=True)
def _lenient_pydicom():
    """Let the tests write values pydicom would refuse (that is the point)."""
    config = pydicom.config.settings
    before = config.writing_validation_mode, config.reading_validation_mode
    config.writing_validation_mode = config.reading_validation_mode = pydicom.config.IGNORE
    yield
    config.writing_validation_mode, config.reading_validation_mode = before


def _series(tmp_path: Path, n: int = 6, seed: int = 0):
    """One study of one series in the competition layout (no CSVs): ``(data dir, truth)``; file ``k`` of
    ``truth.paths`` holds ``truth.volume[k]`` and instance ``truth.instance_numbers[k]``."""
    data = tmp_path / "data"
    truth = write_competition_series(data / "train_images" / STUDY / SERIES, study_uid=generate_uid(),
                                     n_slices=n, seed=seed)  # fmt: skip
    return data, truth


def _ingest(data: Path, out: Path, **kwargs):
    start = time.monotonic()
    result = ingest(data, out, workers=kwargs.pop("workers", 1), **kwargs)
    assert time.monotonic() - start < BOUND_S
    assert result.report.is_file()  # the run completed
    assert not [s for s in result.skipped if "please report" in s.reason]  # no unforeseen failure
    return result


def _stacked(out: Path, series: str = SERIES) -> dict[int, np.ndarray]:
    """Pixels of every ingested slice of the study's series, by instance number."""
    ds = sd.open_dataset(out)
    if STUDY not in ds.study_ids or series not in ds.study(STUDY).series:
        return {}
    found = {}
    for stack in ds.study(STUDY).series[series].stacks:
        image = stack.read()
        for k, instance in enumerate(stack.instance_numbers.tolist()):
            found[instance] = image[k]
    return found


def _check(result, out: Path, truth, changed: set[Path], series: str = SERIES) -> dict[int, np.ndarray]:
    """Every unchanged file ingested exactly; every changed file ingested or reported (by its path); the
    files of ``truth`` as copied into the folder of ``series``."""
    stacked = _stacked(out, series)
    reported = {Path(s.path) for s in result.skipped if s.path}
    for k, path in enumerate(truth.paths):
        path = path.parent.parent / series / path.name
        instance = int(truth.instance_numbers[k])
        if path in changed:
            assert instance in stacked or path in reported, path
        else:
            assert instance in stacked, (path, [s.reason for s in result.skipped])
            np.testing.assert_array_equal(stacked[instance], truth.volume[k])
    return stacked


def _reason(result, path: Path) -> str:
    (line,) = [s for s in result.skipped if Path(s.path) == path]
    assert (line.study_id, line.series_id) == (STUDY, SERIES)
    return line.reason


def _rewrite(path: Path, **elements) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def _panicking_rle_frame(rows: int, cols: int) -> bytes:
    """An RLE frame (two segments for 16 bits) whose runs decode to more bytes than the frame has: the Rust
    decoder of pylibjpeg-rle panics on it (``PanicException``, a ``BaseException``)."""
    segment = bytes([0x81, 7]) * (-(-rows * cols // 128) + 1)  # replicate runs of 128 bytes, one too many
    return struct.pack("<16I", 2, 64, 64 + len(segment), *[0] * 13) + segment + segment


def _rle(path: Path, frame: bytes | None = None) -> None:
    """Rewrite a file as RLE Lossless (``frame``: its encapsulated frame instead of the real one)."""
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    if frame is not None:
        ds.PixelData = encapsulate([frame])
    ds.save_as(path)


# ----------------------------------------------------------------------------- finding 1: decoder panics
@pytest.mark.parametrize("workers", [1, 2])
def test_an_rle_payload_that_panics_the_decoder_is_one_report_line(tmp_path, workers):
    data = tmp_path / "data"
    truth = write_competition_dataset(data)
    t = truth[("1001", "10011")]
    bad = t.paths[2]
    _rle(bad, _panicking_rle_frame(20, 24))
    with pytest.raises(DicomReadError, match="decoder crashed .*Panic"):
        read_pixels(read_headers(bad)[0])
    result = _ingest(data, tmp_path / "out.zarr", workers=workers)
    (line,) = [s for s in result.skipped if Path(s.path) == bad]
    assert (line.study_id, line.series_id) == ("1001", "10011") and "decoder crashed" in line.reason
    ds = sd.open_dataset(tmp_path / "out.zarr")
    assert ds.study_ids == ["1001", "1002"] and len(ds.labels) == 2  # every study, the labels and the report
    (stack,) = ds.study("1001").series["10011"].stacks
    keep = np.arange(6) != 2
    np.testing.assert_array_equal(stack.read(), t.volume[keep])


class _Panic(BaseException):
    """Stands in for a decoder's ``PanicException`` (a ``BaseException``)."""


def test_any_base_exception_of_a_decoder_is_contained_but_an_interrupt_is_not(tmp_path, monkeypatch):
    data, truth = _series(tmp_path, n=4)
    _rle(truth.paths[1])
    real = pixels._decode_all

    def decode(path):
        if path == str(truth.paths[1]):
            raise _Panic("boom")
        return real(path)

    monkeypatch.setattr(pixels, "_decode_all", decode)
    result = _ingest(data, tmp_path / "out.zarr")
    assert _reason(result, truth.paths[1]) == "the decoder crashed (_Panic: boom)"
    _check(result, tmp_path / "out.zarr", truth, {truth.paths[1]})
    monkeypatch.setattr(pixels, "_decode_all", lambda path: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        read_pixels(read_headers(truth.paths[1])[0])


# ----------------------------------------------------------------------------- finding 3: resource bombs
def test_a_number_of_frames_bomb_is_reported_before_any_frame(tmp_path):
    data, truth = _series(tmp_path, n=4)
    bomb = data / "train_images" / STUDY / SERIES / "99.dcm"
    write_enhanced(truth.paths, bomb, transfer_syntax=RLELossless)
    ds = pydicom.dcmread(bomb)
    ds.NumberOfFrames = 50_000_000
    del ds.PerFrameFunctionalGroupsSequence  # one shared position: the reader would build a header per frame
    ds.SharedFunctionalGroupsSequence[0].PlanePositionSequence = [pydicom.Dataset()]
    ds.SharedFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient = [0, 0, 0]
    ds.save_as(bomb)
    start = time.monotonic()
    with pytest.raises(DicomReadError, match="declares 50000000 x 20 x 24 pixels"):
        read_headers(bomb)
    assert time.monotonic() - start < 2
    result = _ingest(data, tmp_path / "out.zarr")
    assert "declares 50000000" in _reason(result, bomb)
    _check(result, tmp_path / "out.zarr", truth, set())


@pytest.mark.parametrize("syntax", ["rle", "jpeg", "native"])
def test_a_65535_square_matrix_in_a_small_file_is_never_decoded(tmp_path, syntax, testdata_dir):
    data, truth = _series(tmp_path, n=4)
    bomb = truth.paths[1]
    if syntax == "rle":
        _rle(bomb)
    elif syntax == "jpeg":  # a real JPEG lossless file's payload, with this series' header
        real = sorted((testdata_dir / "dicom/dicom2nifti/generic/compressed_jpeg/001").iterdir())[0]
        jpeg = pydicom.dcmread(real)
        ds = pydicom.dcmread(bomb)
        ds.file_meta.TransferSyntaxUID = jpeg.file_meta.TransferSyntaxUID
        ds.PixelData, ds["PixelData"].VR = jpeg.PixelData, "OB"
        ds.save_as(bomb)
    _rewrite(bomb, Rows=65535, Columns=65535)
    result = _ingest(data, tmp_path / "out.zarr")
    assert "more than the limit of 2048 MiB per file: not decoded" in _reason(result, bomb)  # the memory cap
    _check(result, tmp_path / "out.zarr", truth, {bomb})
    with pytest.raises(DicomReadError) as info:  # without the memory cap: the file's size
        read_headers(bomb, ReadLimits(max_image_bytes=1 << 40))
    if syntax == "native":
        assert str(info.value).startswith("truncated pixel data (the header declares 65535 x 65535 pixels")
    else:
        assert "more than 1000 times its size: not decoded" in str(info.value)
    with pytest.raises(DicomReadError, match="more than the limit of"):  # a configurable cap
        read_headers(truth.paths[0], ReadLimits(max_image_bytes=512))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_a_socket_and_a_broken_link_are_report_lines_never_opened(tmp_path):
    data, truth = _series(tmp_path, n=4)
    folder = data / "train_images" / STUDY / SERIES
    os.mkfifo(folder / "99.dcm")
    (folder / "98.dcm").symlink_to(tmp_path / "gone.dcm")
    code = textwrap.dedent(f"""
        from spinedata.ingest import ingest
        r = ingest({str(data)!r}, {str(tmp_path / 'out.zarr')!r}, workers=1)
        print(r.n_complete)
        for s in r.skipped:
            print(s.path, '|', s.reason)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1"
    assert f"{folder / '99.dcm'} | not a regular file (a FIFO): not opened" in lines
    assert f"{folder / '98.dcm'} | cannot open file (a broken symbolic link)" in lines
    assert len(_stacked(tmp_path / "out.zarr")) == 4


# ----------------------------------------------------------------------------- findings 4, 5: one odd file
def test_a_corrupt_deflate_stream_and_an_overflowing_rescale_lose_only_their_file(tmp_path):
    data, truth = _series(tmp_path, n=6)
    deflated, slope = truth.paths[1], truth.paths[3]
    ds = pydicom.dcmread(deflated)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(deflated)
    raw = bytearray(deflated.read_bytes())
    start = 144 + struct.unpack("<I", raw[140:144])[0]  # after the file meta information: the deflate stream
    raw[start] = 0xFF  # a block of the invalid type 3: zlib.error
    deflated.write_bytes(bytes(raw))
    _rewrite(slope, RescaleSlope="1e300")
    result = _ingest(data, tmp_path / "out.zarr")
    assert "RescaleSlope 1e+300" in _reason(result, slope)
    assert "invalid block type" in _reason(result, deflated)
    _check(result, tmp_path / "out.zarr", truth, {deflated, slope})


def test_a_memory_error_while_decoding_loses_only_its_file(tmp_path, monkeypatch):
    data, truth = _series(tmp_path, n=4)
    _rle(truth.paths[2])
    real = pixels._decode_all
    monkeypatch.setattr(pixels, "_decode_all",
                        lambda path: (_ for _ in ()).throw(MemoryError()) if path == str(truth.paths[2]) else real(path))
    result = _ingest(data, tmp_path / "out.zarr")
    assert _reason(result, truth.paths[2]) == "out of memory while reading it"
    _check(result, tmp_path / "out.zarr", truth, {truth.paths[2]})


def test_a_valid_deflated_file_is_ingested(tmp_path):
    data, truth = _series(tmp_path, n=4)
    for path in truth.paths[1:3]:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path)
    result = _ingest(data, tmp_path / "out.zarr")
    assert [s for s in result.skipped if s.path.endswith(".dcm")] == []
    assert len(_check(result, tmp_path / "out.zarr", truth, set())) == 4


# ----------------------------------------------------------------------------- finding 11: absurd values
def test_absurd_but_finite_geometry_is_reported_never_stacked(tmp_path):
    data, truth = _series(tmp_path, n=7)
    far, tiny, huge = truth.paths[1], truth.paths[3], truth.paths[5]
    _rewrite(far, ImagePositionPatient=["-1e300", "0", "0"])
    _rewrite(tiny, PixelSpacing=["1e-300", "1e-300"])
    _rewrite(huge, PixelSpacing=["1e300", "1e300"])
    result = _ingest(data, tmp_path / "out.zarr")
    assert _reason(result, far).startswith("implausible ImagePositionPatient")
    assert _reason(result, tiny).startswith("implausible PixelSpacing")
    assert _reason(result, huge).startswith("implausible PixelSpacing")
    _check(result, tmp_path / "out.zarr", truth, {far, tiny, huge})
    # every position scaled by 1e305: nothing plausible left, every file reported, no absurd affine written
    data2, truth2 = _series(tmp_path / "2", n=3)
    for path in truth2.paths:
        position = [float(v) * 1e305 for v in pydicom.dcmread(path).ImagePositionPatient]
        _rewrite(path, ImagePositionPatient=[f"{v:.6g}" for v in position])
    result = _ingest(data2, tmp_path / "out2.zarr")
    for path in truth2.paths:
        assert any(s.reason.startswith("implausible ImagePositionPatient") for s in result.skipped if s.path == str(path))
    assert sd.open_dataset(tmp_path / "out2.zarr").study_ids == []


def test_a_file_of_another_bits_allocated_is_split_off_never_merged(tmp_path):
    data, truth = _series(tmp_path, n=5)
    odd = truth.paths[2]
    ds = pydicom.dcmread(odd)
    bits = (ds.pixel_array > 1500).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = np.packbits(bits.ravel(), bitorder="little").tobytes()
    ds.save_as(odd)
    result = _ingest(data, tmp_path / "out.zarr")
    assert any(s.reason.startswith("series with mixed pixel formats (1/1 bits MONOCHROME2, 16/16 bits")
               for s in result.skipped)  # fmt: skip
    stacks = sd.open_dataset(tmp_path / "out.zarr").study(STUDY).series[SERIES].stacks
    by_size = sorted(stacks, key=lambda s: s.shape[0])
    assert [s.shape[0] for s in by_size] == [1, 4]
    np.testing.assert_array_equal(by_size[0].read()[0], bits)  # the 1-bit file alone, its own values
    np.testing.assert_array_equal(by_size[1].read(), truth.volume[[0, 1, 3, 4]])


# ----------------------------------------------------------------------------- finding 10: orphans
ORPHAN_PARENT = """
import os, sys, time
from spinedata.ingest import pool as workers
if sys.argv[1] == "watchdog":
    workers.sys.platform = "other"  # as on a system without prctl
    workers.PARENT_CHECK_S = 0.1
with workers.ProcessPool(2) as executor:
    pool = executor.pool
    pids = list(pool.submit(os.getpid).result() for _ in range(8))
    futures = [pool.submit(time.sleep, 300) for _ in range(2)]
    time.sleep(0.5)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; forks the workers")
@pytest.mark.parametrize("how", ["prctl", "watchdog"])
def test_workers_end_when_their_parent_is_killed(tmp_path, how):
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_PARENT, how], cwd=REPO, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        os.kill(parent.pid, signal.SIGKILL)  # the parent alone
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers)
    finally:
        parent.kill()
        for pid in workers if "workers" in locals() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- finding 13: one-line errors
def test_bad_outputs_are_one_line_errors_before_any_work(tmp_path, monkeypatch):
    data, _ = _series(tmp_path, n=2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        ingest(data, tmp_path / "file", workers=1)
    with pytest.raises(OutputPathError, match="lies below the file"):
        ingest(data, tmp_path / "file" / "out.zarr", workers=1)
    with pytest.raises(OutputPathError, match="bytes long, more than the 255"):
        ingest(data, tmp_path / ("x" * 300), workers=1)
    with pytest.raises(OutputPathError, match="bytes long"):
        ingest(tmp_path / ("d" * 300), tmp_path / "out.zarr", workers=1)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    with pytest.raises(OutputPathError, match="no permission to write in"):  # a read-only folder (root may write)
        ingest(data, tmp_path / "out.zarr", workers=1)
    monkeypatch.undo()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("spinedata.ingest.run.create_or_open_store", refuse)
    with pytest.raises(OutputPathError, match="cannot create or open the store .*Permission denied"):
        ingest(data, tmp_path / "out.zarr", workers=1)
    assert not (tmp_path / "out.zarr").exists()


def test_the_cli_prints_one_error_line_for_a_read_only_or_file_output(tmp_path):
    data, _ = _series(tmp_path, n=2)
    (tmp_path / "file").write_text("x")
    done = subprocess.run([sys.executable, "-m", "cli.app", "ingest", str(data), str(tmp_path / "file"),
                           "--workers", "1", "--no-progress"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("error: output ") and done.stderr.count("\n") == 1


def test_a_250_character_study_folder_is_a_report_line(tmp_path):
    data, truth = _series(tmp_path, n=3)
    long_study = data / "train_images" / ("7" * 250)
    shutil.copytree(data / "train_images" / STUDY, long_study)
    result = _ingest(data, tmp_path / "out.zarr")
    (line,) = [s for s in result.skipped if s.path == str(long_study)]
    assert "more than the 128 an id may have" in line.reason
    _check(result, tmp_path / "out.zarr", truth, set())


# ----------------------------------------------------------------------------- fuzz
def _element_offset(raw: bytes, tag: int) -> int:
    """Offset of an explicit VR little endian element's tag in ``raw`` (-1 when absent)."""
    return raw.find(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 132)


def _set_length(path: Path, tag: int, length: int) -> None:
    raw = bytearray(path.read_bytes())
    at = _element_offset(raw, tag)
    if at < 0:
        return
    if bytes(raw[at + 4 : at + 6]) in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        raw[at + 8 : at + 12] = struct.pack("<I", length & 0xFFFFFFFF)
    else:
        raw[at + 6 : at + 8] = struct.pack("<H", length & 0xFFFF)
    path.write_bytes(bytes(raw))


def _claim_syntax(path: Path, uid: str) -> None:
    """Change only the TransferSyntaxUID of a file's meta information (and the group length), not its data."""
    raw = path.read_bytes()
    at = raw.find(b"\x02\x00\x10\x00UI", 132)
    length = struct.unpack("<H", raw[at + 6 : at + 8])[0]
    value = uid.encode() + b"\x00" * (len(uid) % 2)
    raw = raw[: at + 6] + struct.pack("<H", len(value)) + value + raw[at + 8 + length :]
    group = raw.find(b"\x02\x00\x00\x00UL", 132)
    if group >= 0:
        old = struct.unpack("<I", raw[group + 8 : group + 12])[0]
        raw = raw[: group + 8] + struct.pack("<I", old + len(value) - length) + raw[group + 12 :]
    path.write_bytes(raw)


def _flip(path: Path, start_fraction: float, count: int, seed: int) -> None:
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    start = int(len(raw) * start_fraction)
    for at in rng.integers(start, len(raw), size=count):
        raw[at] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(raw))


HEADER_VALUES = {
    "NumberOfFrames": ["50000000", "0", "-1", "2", "1e9"],
    "Rows": [65535, 0, 1],
    "Columns": [65535, 0, 3],
    "BitsAllocated": [1, 8, 12, 32, 64, 0],
    "BitsStored": [0, 1, 40],
    "SamplesPerPixel": [3, 0],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", ""],
    "RescaleSlope": ["1e300", "0", "nan", "-1e-300", "1e308"],
    "RescaleIntercept": ["1e300", "-inf", "1e9"],
    "PixelSpacing": [["1e-300", "1"], ["1e300", "1e300"], ["0", "1"], ["nan", "1"], ["-1", "1"]],
    "ImagePositionPatient": [["-1e300", "0", "0"], ["1e305", "1e305", "1e305"], ["inf", "0", "0"], ["1", "2"]],
    "ImageOrientationPatient": [["1", "0", "0", "0", "1", "1e-300"], ["1e300", "0", "0", "0", "1", "0"]],
}
SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.90", "9.9.9"]  # fmt: skip
LENGTH_TAGS = [0x00280010, 0x00200032, 0x00280030, 0x7FE00010, 0x00080018]

mutations = st.one_of(
    st.tuples(st.just("value"), st.sampled_from(sorted(HEADER_VALUES)), st.integers(0, 4)),
    st.tuples(st.just("syntax"), st.sampled_from(SYNTAXES), st.just(0)),
    st.tuples(st.just("length"), st.sampled_from(LENGTH_TAGS), st.sampled_from([0, 1, 3, 0xFFFF, 0xFFFFFFFF, 1 << 20])),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999), st.just(0)),
    st.tuples(st.just("flip"), st.floats(0.5, 0.999), st.integers(1, 20)),
)


def _mutate(path: Path, mutation) -> None:
    kind, what, number = mutation
    if kind == "value":
        choices = HEADER_VALUES[what]
        _rewrite(path, **{what: choices[number % len(choices)]})
    elif kind == "syntax":  # the file claims a transfer syntax its data are not in
        _claim_syntax(path, what)
    elif kind == "length":
        _set_length(path, what, number)
    elif kind == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * what)])
    else:
        _flip(path, what, number, seed=number)


def _real_series(testdata_dir: Path, name: str) -> list[Path]:
    return sorted((testdata_dir / "dicom" / name).iterdir())


SOURCES = ["synthetic", "synthetic_rle", "dicom2nifti/anatomical/001", "dicom2nifti/generic/compressed_rle/001",
           "dicom2nifti/generic/compressed_jpeg/001"]  # fmt: skip


def _prepare(tmp_path: Path, source: str, testdata_dir: Path | None):
    """A study of one series from ``source`` and the truth (``_series``'s) of its pristine ingest."""
    if source.startswith("synthetic"):
        data, truth = _series(tmp_path, n=4)
        if source == "synthetic_rle":
            for path in truth.paths:
                _rle(path)
        return data, truth
    data = tmp_path / "data"
    folder = data / "train_images" / STUDY / SERIES
    folder.mkdir(parents=True)
    paths = [Path(shutil.copy(p, folder / p.name)) for p in _real_series(testdata_dir, source)]
    result = ingest(data, tmp_path / "pristine.zarr", workers=1)
    stacked = _stacked(tmp_path / "pristine.zarr")
    assert result.n_complete == 1 and len(stacked) == len(paths)
    instances = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in paths]

    class Truth:
        pass

    truth = Truth()
    truth.paths, truth.instance_numbers = paths, np.array(instances)
    truth.volume = np.stack([stacked[i] for i in instances])
    shutil.rmtree(tmp_path / "pristine.zarr")
    return data, truth


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations, which=st.integers(0, 3))
def test_fuzz_each_file_is_ingested_or_reported_and_nothing_else_is_lost(tmp_path_factory, request, source,
                                                                          mutation, which):  # fmt: skip
    testdata_dir = None if source.startswith("synthetic") else request.getfixturevalue("testdata_dir")
    tmp_path = tmp_path_factory.mktemp("fuzz")
    data, truth = _prepare(tmp_path, source, testdata_dir)
    target = truth.paths[which % len(truth.paths)]
    _mutate(target, mutation)
    result = _ingest(data, tmp_path / "out.zarr")
    _check(result, tmp_path / "out.zarr", truth, {target})
    shutil.rmtree(tmp_path)


def test_structured_mutations_of_every_kind_on_one_series(tmp_path):
    """Every header value of ``HEADER_VALUES``, every claimed syntax, element lengths and a cut at every
    tenth, each in a copy of a 4-file series (one series per mutation, one study, one ingest): each mutated
    file is ingested or reported and the other three files of its series are ingested exactly."""
    data, truth = _series(tmp_path, n=4)
    cases = [("value", k, n) for k, values in HEADER_VALUES.items() for n in range(len(values))]
    cases += [("syntax", uid, 0) for uid in SYNTAXES] + [("truncate", f / 10, 0) for f in range(10)]
    cases += [("length", tag, n) for tag in LENGTH_TAGS for n in (1, 0xFFFF)]
    folder = data / "train_images" / STUDY / SERIES
    targets = {}
    for number, mutation in enumerate(cases):
        series = str(100 + number)
        shutil.copytree(folder, folder.parent / series)
        target = folder.parent / series / truth.paths[number % 4].name
        _mutate(target, mutation)
        targets[series] = target
    result = _ingest(data, tmp_path / "out.zarr")
    for series, target in targets.items():
        _check(result, tmp_path / "out.zarr", truth, {target}, series)
