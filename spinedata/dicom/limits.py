"""What one file may declare before it is read, which files are opened at all, and containment of failures.

A file beyond ``ReadLimits``, a FIFO or device, or any failure while reading one file (a decoder's panic,
MemoryError, a corrupt deflate stream; not an interrupt) becomes a ``DicomReadError``: a report line for
that file, never the end of the run (``docs/reliability.md``).
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass

from spinedata.dicom.elements import NATIVE_SYNTAXES, UNDEFINED
from spinedata.dicom.values import Values, number
from spinedata.errors import DicomReadError

SUPPORTED_BITS_ALLOCATED = (1, 8, 16, 32)
"""BitsAllocated of the grey-scale images read (anything else is reported before decoding)."""

DEFAULT_MAX_IMAGE_BYTES = 2 << 30
"""Decoded bytes one file may declare (Rows x Columns x frames x bytes per sample), by default: a file
declaring more is reported before anything is decoded (``ReadLimits``)."""
MAX_COMPRESSION_RATIO = 1000
"""An encapsulated (compressed) or deflated file may declare at most this many times its size in decoded
bytes (generous: RLE and JPEG of real images stay far below, though an all-zero image can go higher)..."""
COMPRESSED_FLOOR_BYTES = 16 << 20
"""... or this many decoded bytes, whichever is more, so that a small file of a blank image is never refused."""


@dataclass(frozen=True)
class ReadLimits:
    """What one file may declare before it is decoded: ``max_image_bytes`` decoded bytes at most (the
    memory cap), and for compressed or deflated files at most ``max_compression_ratio`` times the file's
    size (or ``compressed_floor_bytes``). Native pixel data must hold what the header declares."""

    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_compression_ratio: float = MAX_COMPRESSION_RATIO
    compressed_floor_bytes: int = COMPRESSED_FLOOR_BYTES


DEFAULT_LIMITS = ReadLimits()


def contained(error: BaseException) -> bool:
    """Whether a failure while reading one file is that file's problem (a report line), not the run's:
    everything but an interrupt or an exit. Decoders written in Rust raise ``PanicException``, a
    ``BaseException``, on damaged data; MemoryError, zlib.error or OverflowError are the file's too."""
    return not isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit)


def failure_reason(error: BaseException) -> str:
    """The report text of an unexpected failure while reading a file (one line, bounded length)."""
    if isinstance(error, MemoryError):
        return "out of memory while reading it"
    text = " ".join(str(error).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    name = type(error).__name__
    if not isinstance(error, Exception):
        return f"the decoder crashed ({name}: {text})"
    return f"unexpected {name}: {text}"


def contain(function):
    """Any contained failure of ``function`` (see ``contained``) becomes a ``DicomReadError``."""

    @functools.wraps(function)
    def reading(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except DicomReadError:
            raise
        except BaseException as error:
            if not contained(error):
                raise
            raise DicomReadError(failure_reason(error)) from error

    return reading


FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
              stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder"}  # fmt: skip


def check_regular_file(path: str) -> None:
    """``DicomReadError`` unless ``path`` is a regular file (links followed): a FIFO, socket or device is
    never opened (reading a FIFO would wait forever), a broken link is reported as one."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if os.path.islink(path):
            raise DicomReadError("cannot open file (a broken symbolic link)") from error
        raise DicomReadError(f"cannot open file ({error.strerror})") from error
    if not stat.S_ISREG(mode):
        kind = FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise DicomReadError(f"not a regular file ({kind}): not opened")


def _itemsize(bits: int) -> int:
    """Bytes per decoded sample of ``bits`` allocated bits (what a decoder hands out: 1-bit pixels as bytes)."""
    return 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8


def check_declared(values: Values, frames: int, rows: int, cols: int, transfer_syntax: str, length: int,
                   size: int, limits: ReadLimits) -> None:
    """Before anything is decoded (header arithmetic only): what the header declares (frames x rows x
    columns x bytes per sample) must fit ``limits.max_image_bytes``; native pixel data must hold it; an
    encapsulated or deflated file may declare at most ``max_compression_ratio`` times its size (or
    ``compressed_floor_bytes``), and at most one frame per 8 bytes of the file (a frame of encapsulated
    pixel data is at least one item)."""
    if frames < 1:
        raise DicomReadError(f"invalid NumberOfFrames {frames}")
    bits = number(values, "BitsAllocated", int, 0)
    samples = number(values, "SamplesPerPixel", int, 1)
    if bits not in SUPPORTED_BITS_ALLOCATED:
        raise DicomReadError(f"BitsAllocated {bits} is not supported (expected one of {SUPPORTED_BITS_ALLOCATED})")
    if samples != 1:
        raise DicomReadError(f"SamplesPerPixel {samples}: not a grey-scale image")
    decoded = frames * rows * cols * _itemsize(bits)
    shape = f"{frames} x {rows} x {cols}" if frames > 1 else f"{rows} x {cols}"
    if decoded > limits.max_image_bytes:
        raise DicomReadError(
            f"declares {shape} pixels ({decoded / 2**20:.0f} MiB decoded), more than the limit of "
            f"{limits.max_image_bytes / 2**20:.0f} MiB per file: not decoded"
        )
    if length == UNDEFINED or transfer_syntax not in NATIVE_SYNTAXES:  # encapsulated or deflated
        if decoded > max(size * limits.max_compression_ratio, limits.compressed_floor_bytes):
            raise DicomReadError(
                f"declares {shape} pixels ({decoded} bytes decoded) in a file of {size} bytes, more than "
                f"{limits.max_compression_ratio:g} times its size: not decoded"
            )
        if frames > max(size // 8, 1):
            raise DicomReadError(f"declares {frames} frames, more than a file of {size} bytes can hold")
    else:
        needed = -(-frames * rows * cols * bits // 8)
        if length < needed:
            raise DicomReadError(
                f"truncated pixel data (the header declares {shape} pixels of {bits} bits, {needed} bytes; "
                f"the pixel data hold {length})"
            )
