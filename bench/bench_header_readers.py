"""CPU per file of reading the header values ingest needs, by ``spinedata`` and by other DICOM readers.

    .venv/bin/python bench/bench_header_readers.py --folder bench/out/ingest/data20/train_images --repeats 7

Answers "would a compiled header reader make ingest faster?" with numbers. Over every ``*.dcm`` under
``--folder`` (warm page cache, one process, best of ``--repeats`` runs of ``time.process_time``):

- ``spinedata read_header``: the whole ``SliceHeader`` (25 elements converted and checked, pixel offset);
- ``spinedata scan only``: ``spinedata.dicom.fastscan.scan``, the raw bytes of the 25 elements and the pixel offset;
- ``pydicom dcmread``: ``stop_before_pixels`` and ``specific_tags`` of the same 25, then their values;
- ``dicomsdl`` and ``fastdicom`` (compiled readers, timed only when importable; neither is a dependency:
  ``pip install dicomsdl fastdicom`` in a scratch environment): open the file and get the 25 values.

Prints a Markdown table (ms per file).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import time
from pathlib import Path

from spinedata.dicom import HEADER_ELEMENTS, HEADER_KEYWORDS, SCAN_TAGS, read_header
from spinedata.dicom.elements import scanned_values
from spinedata.dicom.fastscan import scan
from spinedata.dicom.values import finite_floats
from spinedata.geometry import orientation


def forget_conversions() -> None:
    """Empty ``spinedata.dicom``'s caches of converted values, so that each repeat reads the files as an ingest
    worker does, once each (a value repeated across a series is converted once, a file's own values every
    time), and not with every file's values remembered from the repeat before."""
    for cached in (scanned_values, finite_floats, orientation._unit_orientation):
        cached.cache_clear()


def best_ms_per_file(files: list[str], read, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        forget_conversions()
        start = time.process_time()
        for path in files:
            read(path)
        best = min(best, time.process_time() - start)
    return best / len(files) * 1000


def readers() -> dict[str, object]:
    """Name -> ``read(path)`` of every reader available here."""
    import pydicom

    found = {
        "spinedata `read_header` (values converted and checked, pixel offset)": read_header,
        "spinedata `fastscan.scan` only (raw values, pixel offset)": lambda path: scan(path, SCAN_TAGS),
    }

    def with_pydicom(path):
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_KEYWORDS)
        return [dataset.get(keyword) for keyword in HEADER_KEYWORDS]

    found["pydicom `dcmread` (specific_tags) + values"] = with_pydicom
    if importlib.util.find_spec("dicomsdl"):
        import dicomsdl

        def with_dicomsdl(path):
            dataset = dicomsdl.open_file(path)
            return [dataset.getDataElement(keyword).value() for keyword in HEADER_KEYWORDS]

        found[f"dicomsdl {importlib.metadata.version('dicomsdl')} (C++) `open_file` + values"] = with_dicomsdl
    if importlib.util.find_spec("fastdicom"):
        import fastdicom

        tags = [(tag >> 16, tag & 0xFFFF) for tag, _ in HEADER_ELEMENTS.values()]

        def with_fastdicom(path):
            dataset = fastdicom.dcmread(path, stop_before_pixels=True)
            return [dataset.get(tag) for tag in tags]

        found[f"fastdicom {importlib.metadata.version('fastdicom')} (Rust) `dcmread` + values"] = with_fastdicom
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("bench/out/ingest/data20/train_images"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    files = sorted(str(p) for p in args.folder.rglob("*.dcm"))
    if not files:
        raise SystemExit(f"no *.dcm under {args.folder} (run bench/bench_ingest.py first to write its dataset)")
    for path in files:  # warm the page cache
        Path(path).read_bytes()
    print(f"{len(files)} files under `{args.folder}`, best of {args.repeats} runs, CPU ms per file:\n")
    print("| reader | ms per file |\n|---|---|")
    for name, read in readers().items():
        print(f"| {name} | {best_ms_per_file(files, read, args.repeats):.3f} |")


if __name__ == "__main__":
    main()
