"""Speed and severity visibility of the synthetic study generator (``spinedata.synth``).

Times ``generate`` for N studies in one process (one core, BLAS limited to one thread) at the default sizes,
then measures in rendered images the size each grade changes, per grade (``spinedata.synth.measure``).

    .venv/bin/python bench/bench_synth.py [--studies 10] [--seed 0] [--severity-studies 40]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from spinedata.constants import SEVERITIES  # noqa: E402
from spinedata.synth import generate  # noqa: E402
from spinedata.synth.measure import grade_sizes  # noqa: E402

UNITS = {"spinal": "canal CSF width, mm", "foraminal": "foraminal fat area, mm^2", "subarticular": "recess depth, mm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--severity-studies", type=int, default=40)
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores; python "
          f"{platform.python_version()}")
    if args.studies > 0:
        _time_generate(args.studies, args.seed)
    _severity_table(args.severity_studies, args.seed)


def _time_generate(n_studies: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = generate(Path(tmp) / "data", n_studies, seed)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "data").rglob("*")) / 1e6
    print(f"generate {n_studies} studies (seed {seed}, default options, 1 process): {seconds:.1f} s, "
          f"{seconds / n_studies:.2f} s/study wall; CPU {cpu:.1f} s ({cpu / n_studies:.2f} s/study); "
          f"{result.n_series} series, {result.n_files} files, {size_mb:.0f} MB; load average {os.getloadavg()[0]:.1f}")


def _severity_table(n_studies: int, seed: int) -> None:
    sizes = grade_sizes(n_studies, seed=seed)
    print(f"\nsizes per grade over {n_studies} studies with balanced grades (mean +- sd [min, max], n)")
    print("| measure | " + " | ".join(SEVERITIES) + " |")
    print("|---|---|---|---|")
    for group, unit in UNITS.items():
        cells = []
        for grade in range(3):
            v = sizes[(sizes["group"] == group) & (sizes["grade"] == grade)]["size"]
            cells.append(f"{v.mean():.1f} +- {v.std():.1f} [{v.min():.1f}, {v.max():.1f}], n={len(v)}")
        print(f"| {group}: {unit} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
