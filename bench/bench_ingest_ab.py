"""`spine ingest` of another commit against this working tree (and dcm2niix), run in interleaved rounds.

    .venv/bin/python bench/bench_ingest_ab.py --base e4d45a0 --rounds 10
    .venv/bin/python bench/bench_ingest_ab.py --base HEAD --base-env OPENBLAS_NUM_THREADS=2 --rounds 10
    .venv/bin/python bench/bench_ingest_ab.py --base HEAD --base-args='--workers 3' --rounds 10

What a change did to ingest's speed, measured so that the shared machine's drifts cancel out: ingest's
time moves by 20-30 % from one minute to the next here, more than most changes do.

1. Checks out ``--base`` with ``git worktree`` into a scratch folder (removed at the end) and
   byte-compiles both trees (as installed packages are).
2. Each round runs, in alternating order, ``spine ingest DATA OUT --no-progress`` with the base's code
   (``PYTHONPATH`` = the worktree, ahead of this environment's editable install), the same with this
   tree's code, and ``dcm2niix -z n -o OUT DATA/train_images``. Every output is kept until all rounds
   are done (deleting files slows creating new ones for minutes on this machine).
3. Prints, per command, the median wall time, CPU (user + system) and minor page faults (rusage of the
   finished children), and the medians of the rounds' own ratios (this tree / base, each / dcm2niix).

The dataset is the ingest benchmark's (``bench/bench_ingest.py`` writes ``bench/out/ingest/data20``).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_settle_option, settle
from settle import record_deletion

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("spinedata", "spinemodels", "cli")


def tool(name: str) -> str:
    """A console script of this environment (beside the interpreter)."""
    return str(Path(sys.executable).parent / name)


SPINE_OF_TREE = [sys.executable, "-m", "cli.app"]
"""``spine`` from the tree on ``PYTHONPATH`` (the console script would import the editable install's
``spine_cli``, this checkout's CLI, over the base's library)."""


def code_root(env: dict[str, str], cwd: Path) -> str:
    """Where ``spinedata`` is imported from under ``env`` (checks that PYTHONPATH picks the tree; run from
    ``cwd``, outside both trees, as ``python -c`` puts its working folder first on the path)."""
    done = subprocess.run([sys.executable, "-c", "import spinedata; print(spinedata.__file__)"], env=env,
                          capture_output=True, text=True, check=True, cwd=cwd)  # fmt: skip
    return str(Path(done.stdout.strip()).parents[1])


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """``(wall s, CPU s, minor page faults)`` of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, after.ru_minflt - before.ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (any git revision)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", type=Path, default=REPO / "bench/out/ingest/data20")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench/out")
    add_settle_option(parser)
    parser.add_argument("--base-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the base's runs only (repeatable), e.g. to compare "
                             "this tree with itself under another setting: --base HEAD --base-env "
                             "OPENBLAS_NUM_THREADS=2")  # fmt: skip
    parser.add_argument("--base-args", default="", metavar="ARGS",
                        help="more arguments for the base's `spine ingest` only, e.g. --base HEAD "
                             "--base-args='--workers 3'")  # fmt: skip
    args = parser.parse_args()
    base_env = dict(item.split("=", 1) for item in args.base_env)
    args.data = args.data.resolve()  # the commands run from a scratch folder
    if not (args.data / "train_images").is_dir():
        sys.exit(f"{args.data} has no train_images/: run bench/bench_ingest.py first")
    args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=args.workdir, prefix="ingest_ab_"))
    base_tree = scratch / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), args.base], check=True,
                   capture_output=True)  # fmt: skip
    try:
        for tree in (base_tree, REPO):
            for package in PACKAGES:
                compileall.compile_dir(str(tree / package), quiet=1)
        variants = {
            " ".join(["base", args.base, *(f"{k}={v}" for k, v in base_env.items()), args.base_args]).strip(): {
                **os.environ, **base_env, "PYTHONPATH": str(base_tree)},
            "this tree": {**os.environ, "PYTHONPATH": str(REPO)},
        }
        for name, env in variants.items():
            root = code_root(env, scratch)
            if Path(root).resolve() != (base_tree if name.startswith("base") else REPO).resolve():
                sys.exit(f"{name}: spinedata imported from {root}, not from its tree")
        settle(args)
        names = [*variants, "dcm2niix -z n"]
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                out = scratch / f"{round_}_{names.index(name)}"
                if name in variants:
                    command = [*SPINE_OF_TREE, "ingest", str(args.data), f"{out}.zarr", "--no-progress"]
                    if name.startswith("base"):
                        command += shlex.split(args.base_args)
                    results[name].append(timed(command, variants[name], scratch))
                else:
                    out.mkdir()
                    command = [tool("dcm2niix"), "-z", "n", "-o", str(out), str(args.data / "train_images")]
                    results[name].append(timed(command, dict(os.environ), scratch))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
        record_deletion()

    def ratio(a: str, b: str) -> float:
        return statistics.median(x[0] / y[0] for x, y in zip(results[a], results[b], strict=True))

    base, this, dcm = names
    load = os.getloadavg()
    print(f"{args.rounds} rounds on {args.data} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"average {load[0]:.1f} at the end)")
    print("| command | wall s (median) | CPU s (median) | minor page faults (median) |")
    print("|---|---|---|---|")
    for name in names:
        rows = results[name]
        print(f"| {name} | {statistics.median(r[0] for r in rows):.2f} | {statistics.median(r[1] for r in rows):.2f} "
              f"| {statistics.median(r[2] for r in rows):.0f} |")
    print(f"\nMedian of the rounds' own ratios: this tree / base {ratio(this, base):.2f}; "
          f"this tree / dcm2niix {ratio(this, dcm):.2f}; base / dcm2niix {ratio(base, dcm):.2f}.")


if __name__ == "__main__":
    main()
