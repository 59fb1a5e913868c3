"""Does a built wheel work away from the source? Build the wheel (from a copy of the checkout's files that git
tracks or would track, so no stale ``build/`` folder leaks into it), install it (no dependencies: they come from
this environment) into an empty folder, then run ``spine demo --quick`` from an unrelated working folder with
that folder first on ``sys.path``, and check that every package was imported from the wheel.

    .venv/bin/python bench/check_wheel.py --out /tmp/wheelcheck

Prints where each package came from, the demo's last lines and the wall time; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("spinedata", "spinemodels", "spine_cli")
WHERE = "import importlib; [print(m, importlib.import_module(m).__file__) for m in {packages}]"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; print and exit 1 when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        print(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        raise SystemExit(1)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="an empty or new folder for the wheel, site and demo")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    source, wheels, site, elsewhere = out / "source", out / "dist", out / "site", out / "elsewhere"
    shutil.rmtree(source, ignore_errors=True)
    for folder in (wheels, site, elsewhere):
        folder.mkdir(parents=True, exist_ok=True)
    files = run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(wheels)])
    wheel = max(wheels.glob("spine-*.whl"), key=os.path.getmtime)
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--upgrade", "--target", str(site), str(wheel)])
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = run([sys.executable, "-c", WHERE.format(packages=PACKAGES)], cwd=elsewhere, env=env).stdout
    print(f"wheel: {wheel.name}\n{where}")
    if any(not line.split(" ", 1)[1].startswith(str(site)) for line in where.splitlines()):
        print("a package was not imported from the wheel")
        raise SystemExit(1)
    start = time.perf_counter()
    demo = run([sys.executable, "-c", "from spine_cli.app import main; main()", "demo", "--quick",
                "--workdir", str(elsewhere / "demo_work")], cwd=elsewhere, env=env)  # fmt: skip
    print("\n".join(demo.stdout.strip().splitlines()[-8:]))
    print(f"spine demo --quick from the wheel: {time.perf_counter() - start:.0f} s, exit 0")


if __name__ == "__main__":
    main()
