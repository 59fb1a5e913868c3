"""Each speed trick on and off, in interleaved rounds: does it earn its place (issue #17)?

    .venv/bin/python bench/bench_tricks.py ingest --rounds 12
    .venv/bin/python bench/bench_tricks.py startup --rounds 30
    .venv/bin/python bench/bench_tricks.py read --rounds 30 --store STORE

Every variant runs this tree's code (``PYTHONPATH``) with ``SPINE_TUNING_OFF`` naming the tricks switched
off (``spinedata/store/_fast.py``, ``cli/startup.py``); each round runs
every variant once, in an order rotated from round to round. Prints, per variant, the median wall time
and the median of the rounds' own ratios to "all on" (above 1: the trick saves time), with the load
average before and after.

- ``ingest``: ``spine ingest DATA OUT --no-progress`` on the ingest benchmark's 20 studies (outputs kept
  until the end; waits for the file system to settle first, ``bench/settle.py``), and ``dcm2niix -z n``.
- ``startup``: ``spine ingest /nonexistent OUT --no-progress`` (every import ingest needs, then stops).
- ``read``: a fresh process opens ``--store`` and reads every stack's geometry (positions, instance
  numbers: the small arrays) and the labels table, as label resolution and loaders do; ``read_warm``:
  the same reading timed inside a process that has imported zarr and pandas already.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_ingest_ab import timed
from common import add_settle_option, settle
from settle import record_deletion

REPO = Path(__file__).resolve().parents[1]
DCM2NIIX = "dcm2niix -z n"
VARIANTS = {
    "ingest": ("fastwrite", "blas", "exit_freeze"),
    "startup": ("blas", "exit_freeze"),
    "read": ("small_read",),
    "read_warm": ("small_read",),
}
READ = """
import sys
from spinedata import open_dataset
ds = open_dataset(sys.argv[1])
for study in ds:
    for series in study.series.values():
        for stack in series.stacks:
            stack.geometry
ds.labels
"""
READ_WARM = """
import sys, time
import zarr, pandas  # already imported, as in a loader or a notebook: only the reading is timed
from spinedata import open_dataset
start = time.perf_counter()
""" + READ.split("open_dataset\n", 1)[1] + """
print(time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(VARIANTS))
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--data", type=Path, default=REPO / "bench/out/ingest/data20")
    parser.add_argument("--store", type=Path, help="read: the store to read (e.g. an ingest of --data)")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench/out")
    add_settle_option(parser)
    parser.add_argument("--with-path", action="append", default=[], metavar="LABEL=DIR",
                        help="one more variant, every trick on, with DIR on PYTHONPATH after this tree (e.g. "
                             "another release of a library installed there with pip --target)")  # fmt: skip
    args = parser.parse_args()
    for package in ("spinedata", "spinemodels", "cli"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    spine = str(Path(sys.executable).parent / "spine")
    names = ["all on", *(f"{t} off" for t in VARIANTS[args.mode])] + ([DCM2NIIX] if args.mode == "ingest" else [])
    env = {name: {**os.environ, "PYTHONPATH": str(REPO), "SPINE_TUNING_OFF": name.split()[0] if name.endswith(" off")
                  else ""} for name in names}  # fmt: skip
    for item in args.with_path:
        label, folder = item.split("=", 1)
        names.insert(len(names) - (args.mode == "ingest"), label)
        env[label] = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{folder}", "SPINE_TUNING_OFF": ""}
    args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=args.workdir, prefix="tricks_"))
    if args.mode == "ingest":
        settle(args)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                out = scratch / f"{round_}_{names.index(name)}"
                if name == DCM2NIIX:
                    out.mkdir()
                    command = [str(Path(sys.executable).parent / "dcm2niix"), "-z", "n", "-o", str(out),
                               str(args.data / "train_images")]  # fmt: skip
                elif args.mode == "ingest":
                    command = [spine, "ingest", str(args.data.resolve()), f"{out}.zarr", "--no-progress"]
                elif args.mode == "startup":
                    command = [spine, "ingest", "/nonexistent", f"{out}.zarr", "--no-progress"]
                else:
                    script = READ if args.mode == "read" else READ_WARM
                    command = [sys.executable, "-c", script, str(args.store.resolve())]
                if args.mode == "startup":  # exits 1 at the missing folder
                    start = time.perf_counter()
                    subprocess.run(command, env=env[name], cwd=scratch, capture_output=True, check=False)
                    times[name].append(time.perf_counter() - start)
                elif args.mode == "read_warm":
                    done = subprocess.run(command, env=env[name], cwd=scratch, capture_output=True, text=True,
                                          check=True)  # fmt: skip
                    times[name].append(float(done.stdout.split()[-1]))
                else:
                    times[name].append(timed(command, env[name], scratch)[0])
        report(args, names, times, load_before)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.mode == "ingest":
            record_deletion()


def report(args, names: list[str], times: dict[str, list[float]], load_before) -> None:
    """The table (printed before the outputs are deleted, which takes minutes)."""
    load_after = os.getloadavg()
    print(f"{args.mode}: {args.rounds} rounds, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"(1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} before, "
          f"{'/'.join(f'{x:.1f}' for x in load_after)} after")
    print("| variant | wall s (median) | median of per-round ratios to all on | min-max of the ratios |")
    print("|---|---|---|---|")
    for name in names:
        ratios = [t / base for t, base in zip(times[name], times["all on"], strict=True)]
        print(f"| {name} | {statistics.median(times[name]):.3f} | {statistics.median(ratios):.3f} | "
              f"{min(ratios):.2f}-{max(ratios):.2f} |")


if __name__ == "__main__":
    main()
