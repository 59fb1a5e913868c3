"""Start-up cost of the ``spine`` command line: how long before any work is done.

    .venv/bin/python bench/bench_startup.py --repeats 7

1. ``spine --help`` and ``spine ingest /nonexistent OUT --no-progress`` (which imports everything ingest
   needs, then stops at the missing folder), whole commands, fastest and median of ``--repeats`` runs;
2. the parent's serial phases of a real ingest on ``--data`` (the ingest benchmark's 20 studies by
   default), run through the console script's ``main`` in a probe: seconds from the probe's start to the
   first study handed to a worker (``ProcessPoolExecutor.submit``) and to the end of the command's work
   (in-process clock), and the whole command's wall time (interpreter start and shutdown included:
   the difference is what the interpreter costs around the work), fastest and median.
3. what Typer's building of the app costs, for every command and for ``ingest`` alone (``spine`` builds
   only the command it runs).
The project is byte-compiled first (as an installed package is). Prints a Markdown table.
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from common import ingest_data_parser, print_table, settle
from settle import record_deletion

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import time, sys
start = time.perf_counter()
import concurrent.futures.process as cfp
submit = cfp.ProcessPoolExecutor.submit
first = []
def timed_submit(self, *args, **kwargs):
    if not first:
        first.append(time.perf_counter() - start)
    return submit(self, *args, **kwargs)
cfp.ProcessPoolExecutor.submit = timed_submit
import atexit
atexit.register(lambda: print(first[0], end[0]))
end = []
from cli.app import main
sys.argv = ["spine", "ingest", sys.argv[1], sys.argv[2], "--no-progress"]
try:
    main()
except SystemExit:
    pass
end.append(time.perf_counter() - start)
"""
"""Runs ``spine ingest`` through ``cli.app.main`` with the first ``submit`` and the end of ``main`` timed
(the import of ``concurrent.futures`` that the probe needs is counted, as ingest imports it anyway); the
times are printed at exit, so that the probe's whole wall time includes the interpreter's shutdown."""


BUILD = """
import sys, time
import typer.main
from cli.app import build_app
from cli.commands import COMMANDS
names = COMMANDS if sys.argv[1] == "all" else (sys.argv[1],)
start = time.perf_counter()
typer.main.get_command(build_app(names))
print(time.perf_counter() - start)
"""
"""Times what Typer does before it parses a command line: build the click command of the app (it reads
every registered command's parameters), for every command or for one."""


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = ingest_data_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    settle(args)
    for package in ("spinedata", "spinemodels", "cli"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    spine = str(Path(sys.executable).parent / "spine")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, command in (
            ("`spine --help`", [spine, "--help"]),
            ("`spine ingest /nonexistent OUT --no-progress`", [spine, "ingest", "/nonexistent", f"{scratch}/x.zarr",
                                                              "--no-progress"]),
        ):
            times = [wall(command) for _ in range(args.repeats)]
            rows.append((label, min(times), statistics.median(times)))
        for label, names in (("Typer reads every command's parameters", "all"),
                             ("Typer reads the parameters of `ingest` alone", "ingest")):
            times = [float(subprocess.run([sys.executable, "-c", BUILD, names], capture_output=True, text=True,
                                          check=True, cwd=REPO).stdout) for _ in range(args.repeats)]
            rows.append((label, min(times), statistics.median(times)))
        if args.data.is_dir():
            firsts, ends, walls = [], [], []
            for k in range(args.repeats):
                start = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", PROBE, str(args.data), f"{scratch}/{k}.zarr"],
                                     capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
                walls.append(time.perf_counter() - start)
                firsts.append(float(out[-2]))
                ends.append(float(out[-1]))
            rows.append((f"ingest of `{args.data}`: first study handed to a worker", min(firsts),
                         statistics.median(firsts)))
            rows.append((f"ingest of `{args.data}`: end of the work (in-process clock)", min(ends),
                         statistics.median(ends)))
            rows.append((f"ingest of `{args.data}`: whole command (wall)", min(walls), statistics.median(walls)))
    record_deletion()
    print(f"typer {version('typer')}, Python {sys.version.split()[0]}, {args.repeats} runs each")
    print_table(["what", "fastest s", "median s"],
                ([label, f"{fastest:.3f}", f"{median:.3f}"] for label, fastest, median in rows))


if __name__ == "__main__":
    main()
