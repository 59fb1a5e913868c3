"""Time DICOM reading (headers, stack building, pixels) against dcm2niix on the real test series.

    .venv/bin/python bench/bench_dicom_read.py [--repeats 7] [--testdata ../shared/testdata]

Prints a Markdown table: per series, the best of ``--repeats`` runs of ``read_header`` on every file,
``build_stacks``, ``read_stack`` on every stack, their sum, and dcm2niix converting the same folder
(``-z n``: uncompressed NIfTI, including its writing). Single process, warm file cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spinedata.dicom import read_header, read_stack
from spinedata.stacks import build_stacks

SERIES = (
    "dcm_qa_decubitus/HFS_t1_sag",
    "dcm_qa_decubitus/HFP_t1_sag",
    "dicom2nifti/generic/compressed_jpeg/001",
    "dicom2nifti/generic/compressed_jpegls/001",
    "dicom2nifti/generic/compressed_j2k/001",
    "dicom2nifti/generic/compressed_rle/001",
    "dicom2nifti/failing/gantrytilting/001",
)


def best_of(repeats: int, function) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def dcm2niix_binary() -> str:
    candidate = Path(sys.executable).with_name("dcm2niix")
    found = str(candidate) if candidate.is_file() else shutil.which("dcm2niix")
    if not found:
        raise SystemExit("dcm2niix not found: pip install dcm2niix")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--testdata",
        type=Path,
        default=Path(os.environ.get("SPINE_TESTDATA", Path(__file__).parents[2] / "shared" / "testdata")),
    )
    args = parser.parse_args()
    binary = dcm2niix_binary()
    print("| series | files | headers ms | build_stacks ms | pixels ms | spinedata ms | dcm2niix ms |")
    print("|---|---|---|---|---|---|---|")
    for name in SERIES:
        folder = args.testdata / "dicom" / name
        files = sorted(p for p in folder.iterdir() if p.is_file())
        t_headers, headers = best_of(args.repeats, lambda files=files: [read_header(p) for p in files])
        t_stacks, (stacks, _) = best_of(args.repeats, lambda headers=headers: build_stacks(headers))
        t_pixels, _ = best_of(args.repeats, lambda stacks=stacks: [read_stack(piece) for _, piece in stacks])
        with tempfile.TemporaryDirectory() as out:
            command = [binary, "-z", "n", "-f", "%s_%p", "-o", out, str(folder)]
            t_ref, _ = best_of(
                args.repeats, lambda command=command: subprocess.run(command, capture_output=True, check=True)
            )
        total = t_headers + t_stacks + t_pixels
        print(
            f"| {name} | {len(files)} | {1e3 * t_headers:.1f} | {1e3 * t_stacks:.1f} | {1e3 * t_pixels:.1f} "
            f"| {1e3 * total:.1f} | {1e3 * t_ref:.1f} |"
        )


if __name__ == "__main__":
    main()
