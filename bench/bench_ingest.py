"""Benchmark `spine ingest` against dcm2niix on the same synthetic dataset, and ingest's peak memory.

    .venv/bin/python bench/bench_ingest.py --studies 20 --small 5 --repeats 7 --seed 0 --docs docs/benchmarks.md

1. Writes (once, reused afterwards) a synthetic competition-layout dataset of ``--studies`` training
   studies with ``spinedata.synth`` (default options: real matrix sizes), and a ``--small`` subset of it
   (hard links, CSVs filtered).
2. Reads every file once (warm page cache), byte-compiles the project (as an installed package is), then
   times, ``--repeats`` times in alternating order,
   ``dcm2niix -z n -o OUT DATA/train_images`` (one call over the whole tree, uncompressed NIfTI) and
   ``spine ingest DATA OUT.zarr --no-progress`` (all cores, a fresh store each time); in the first
   ``--gzip-repeats`` rounds also ``dcm2niix -z y`` (gzipped NIfTI, a compressed output like the store,
   for comparison: the goal is against ``-z n``). Wall times of whole
   commands, start-up included; CPU (user + system) and minor page faults of each from the rusage of the
   finished child processes. Every run writes into a folder of its own and nothing is deleted until
   all runs are timed: on this machine's ext4 (no journal) creating files within minutes of deleting many
   others costs up to 3x the system time (the kernel skips each recently deleted inode,
   ``recently_deleted`` in ``perf``), which deleting the previous run's output would add to the next.
   After the memory runs (4.) they are deleted and one more ``spine ingest`` is timed at once, to show
   that cost.
3. CPU per file of each stage of a worker (headers, stacks, pixels, compressed write), in one process.
4. Peak memory of ``spine ingest`` on the small and the full dataset: the largest sum over the process
   tree (parent + workers) of proportional set size (PSS, so pages shared after fork count once),
   sampled every 20 ms, and the largest single process's RSS.
5. The ratio of the medians (the goal), and the median of the rounds' own ratios (each ingest run over
   the dcm2niix run next to it, which cancels slow drifts of the shared machine). Prints a Markdown
   section; with ``--docs`` it replaces the section between the markers ``<!-- bench_ingest:start -->``
   and ``<!-- bench_ingest:end -->`` (appended when absent).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
from common import add_settle_option, settle
from settle import record_deletion

START, END = "<!-- bench_ingest:start -->", "<!-- bench_ingest:end -->"
GZIP = "dcm2niix -z y"
"""dcm2niix writing gzipped NIfTI (its own zlib unless pigz is on the PATH): a compressed output like
ingest's, timed for comparison (the goal is against ``-z n``)."""
SAMPLE_S = 0.02


def tool(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found (pip install -e '.[dev]')")
    return found


def make_dataset(root: Path, n: int, seed: int) -> Path:
    """The synthetic dataset of ``n`` training studies at ``root`` (generated once)."""
    from spinedata.synth import generate

    if (root / "train_series_descriptions.csv").exists():
        ids = pd.read_csv(root / "train_series_descriptions.csv", dtype=str)["study_id"].nunique()
        if ids == n:
            return root
        shutil.rmtree(root)
    t = time.perf_counter()
    generate(root, n, seed)
    print(f"generated {n} studies in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return root


def subset(full: Path, root: Path, n: int) -> Path:
    """The first ``n`` studies of ``full`` as a dataset of its own (files hard-linked, CSVs filtered);
    kept from an earlier run when it has those studies (no deletion before the timings)."""
    series = pd.read_csv(full / "train_series_descriptions.csv", dtype=str)
    keep = sorted(series["study_id"].unique())[:n]
    images = root / "train_images"
    if (root / "train.csv").exists() and images.is_dir() and sorted(p.name for p in images.iterdir()) == keep:
        return root
    shutil.rmtree(root, ignore_errors=True)
    series = pd.read_csv(full / "train_series_descriptions.csv", dtype=str)
    keep = sorted(series["study_id"].unique())[:n]
    for name in ("train_series_descriptions.csv", "train_label_coordinates.csv", "train.csv"):
        frame = pd.read_csv(full / name, dtype=str, keep_default_na=False)
        root.mkdir(parents=True, exist_ok=True)
        frame[frame["study_id"].isin(keep)].to_csv(root / name, index=False)
    for study in keep:
        shutil.copytree(full / "train_images" / study, root / "train_images" / study, copy_function=os.link)
    return root


def files_of(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in files_of(folder)) / 1e6


def warm(folder: Path) -> None:
    for path in files_of(folder):
        path.read_bytes()


def precompile() -> None:
    """Byte-compile the project's packages (``__pycache__``), as an installed package is: where
    PYTHONDONTWRITEBYTECODE is set (as on this project's machines), every ``spine`` run would otherwise
    compile them from source (~0.1 s)."""
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in ("spinedata", "spinemodels", "cli"):
        compileall.compile_dir(str(root / package), quiet=1)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """``(Pss, Rss)`` of one process in kB (0, 0 when it is gone)."""
    values = {"Pss:": 0, "Rss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key = line.split()[0]
                if key in values:
                    values[key] = int(line.split()[1])
    except OSError:
        pass
    return values["Pss:"], values["Rss:"]


def children_cpu() -> float:
    """User + system CPU seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children_faults() -> int:
    """Minor page faults of every finished child process so far (each one a page the kernel had to map;
    a fresh one it must also zero, and on a virtual machine that gives free memory back to its host, get
    back first)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt


def run_timed(command: list[str], sample_memory: bool = False) -> tuple[float, int, int]:
    """Run a command; return ``(wall seconds, peak tree PSS kB, peak single-process RSS kB)``."""
    peak = {"pss": 0, "rss": 0}
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pids = descendants(process.pid)
            stats = [memory_kb(p) for p in pids]
            peak["pss"] = max(peak["pss"], sum(s[0] for s in stats))
            peak["rss"] = max(peak["rss"], max((s[1] for s in stats), default=0))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    _, err = process.communicate()
    wall = time.perf_counter() - start
    done.set()
    if sample_memory:
        sampler.join()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}): {err.decode()[-2000:]}")
    return wall, peak["pss"], peak["rss"]


def stage_costs(images: Path) -> dict[str, float]:
    """CPU milliseconds per DICOM file of each ingest stage, in this process (one core), over ``images``:
    header read, stack building, pixel read (as the ingest worker reads them), writing the compressed image (``fastwrite``)."""
    from spinedata.dicom import read_header
    from spinedata.ingest.worker import read_stack_for_store
    from spinedata.stacks import build_stacks
    from spinedata.store.fastwrite import write_array
    from spinedata.store.layout import IMAGE_BLOSC, IMAGE_DIMS, IMAGE_SHARDED, image_chunks

    totals = {"read headers": 0.0, "build stacks": 0.0, "read pixels": 0.0, "write image": 0.0}
    n_files = 0
    with tempfile.TemporaryDirectory() as scratch:
        for k, series in enumerate(sorted(p for p in images.glob("*/*") if p.is_dir())):
            files = sorted(p for p in series.iterdir() if p.is_file())
            n_files += len(files)
            t = time.process_time()
            headers = [read_header(p) for p in files]
            totals["read headers"] += time.process_time() - t
            t = time.process_time()
            stacks, _ = build_stacks(headers)
            totals["build stacks"] += time.process_time() - t
            for j, (_, members) in enumerate(stacks):
                t = time.process_time()
                image, _ = read_stack_for_store(members)  # as ingest reads it (stored integers + rescale)
                totals["read pixels"] += time.process_time() - t
                t = time.process_time()
                write_array(Path(scratch) / f"{k}_{j}", image, chunks=image_chunks(image.shape),
                            dimension_names=IMAGE_DIMS, blosc=IMAGE_BLOSC, shard=IMAGE_SHARDED)  # fmt: skip
                totals["write image"] += time.process_time() - t
    return {name: seconds / n_files * 1000 for name, seconds in totals.items()}


def ingest_command(data: Path, out: Path, workers: int | None) -> list[str]:
    command = [tool("spine"), "ingest", str(data), str(out), "--no-progress"]
    return command + (["--workers", str(workers)] if workers else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--small", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="spine ingest --workers (default: all cores)")
    parser.add_argument("--gzip-repeats", type=int, default=2, help="runs of dcm2niix -z y (slow; 0: none)")
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/ingest"))
    parser.add_argument("--docs", type=Path, default=None, help="update this Markdown file's ingest section")
    add_settle_option(parser)
    args = parser.parse_args()

    work = args.workdir
    full = make_dataset(work / f"data{args.studies}", args.studies, args.seed)
    small = subset(full, work / f"data{args.small}", args.small)
    images = full / "train_images"
    n_files = len(files_of(images))
    warm(images)
    precompile()
    settle(args)

    tools = ["dcm2niix", "spine ingest", GZIP]
    rows: dict[str, list[float]] = {name: [] for name in tools}
    cpu: dict[str, list[float]] = {name: [] for name in tools}
    faults: dict[str, list[int]] = {name: [] for name in tools}
    sizes: dict[str, float] = {}
    created: dict[str, int] = {}
    runs = Path(tempfile.mkdtemp(dir=work, prefix="runs_"))  # deleted only once everything is timed
    for repeat in range(args.repeats):
        order = tools if repeat % 2 == 0 else tools[::-1]
        for name in order:
            if name == GZIP and repeat >= args.gzip_repeats:
                continue
            output = runs / f"{repeat}_{tools.index(name)}"
            if name == "spine ingest":
                command = ingest_command(full, output, args.workers)
            else:
                output.mkdir(parents=True)
                command = [tool("dcm2niix"), "-z", "y" if name == GZIP else "n", "-o", str(output), str(images)]
            before, faults_before = children_cpu(), children_faults()
            rows[name].append(run_timed(command)[0])
            cpu[name].append(children_cpu() - before)
            faults[name].append(children_faults() - faults_before)
            sizes[name] = size_mb(output)
            created[name] = sum(1 for _ in output.rglob("*"))
    nii_mb, store_mb, dicom_mb = sizes["dcm2niix"], sizes["spine ingest"], size_mb(images)
    n_created = sum(1 for _ in runs.rglob("*"))

    memory = {}
    for label, data in ((args.small, small), (args.studies, full)):
        _, pss, rss = run_timed(ingest_command(data, runs / f"memory{label}.zarr", args.workers), sample_memory=True)
        memory[label] = (pss, rss)
    shutil.rmtree(runs)
    record_deletion()
    after_delete = Path(tempfile.mkdtemp(dir=work, prefix="after_delete_"))
    before = children_cpu()
    deleted_wall = run_timed(ingest_command(full, after_delete / "out.zarr", args.workers))[0]
    deleted_cpu = children_cpu() - before
    shutil.rmtree(after_delete)
    record_deletion()

    stages = stage_costs(images)
    median = {name: statistics.median(times) for name, times in rows.items() if times}
    ratio = median["spine ingest"] / median["dcm2niix"]
    paired = statistics.median(i / d for i, d in zip(rows["spine ingest"], rows["dcm2niix"], strict=True))
    fault_median = {name: statistics.median(counts) for name, counts in faults.items() if counts}
    load = os.getloadavg()
    command_line = "    .venv/bin/python bench/bench_ingest.py " + " ".join(
        f"--{k} {v}" for k, v in (("studies", args.studies), ("small", args.small), ("repeats", args.repeats),
                                  ("seed", args.seed)) if v is not None
    ) + (f" --workers {args.workers}" if args.workers else "") + (
        f" --gzip-repeats {args.gzip_repeats}" if args.gzip_repeats != 2 else "") + " --docs docs/benchmarks.md"  # fmt: skip
    lines = [
        START,
        "## Ingest (`spine ingest` against dcm2niix)",
        "",
        "Command (writes the dataset once under `bench/out/ingest/`, then times both tools on it):",
        "",
        command_line,
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end), Python {platform.python_version()}. "
        f"Dataset: {args.studies} synthetic training studies (`spinedata.synth`, default options, seed "
        f"{args.seed}): {n_files} DICOM files, {dicom_mb:.0f} MB. Page cache warm; whole commands timed "
        f"(interpreter start and imports included); median of {args.repeats} runs in alternating order.",
        "",
        "| tool | output | wall s (median) | runs (s) | CPU s, user + system (median) | minor page faults "
        "(median) | output MB | files and folders created |",
        "|---|---|---|---|---|---|---|---|",
        f"| `dcm2niix -z n` (1 process) | uncompressed NIfTI + JSON | {median['dcm2niix']:.2f} | "
        f"{', '.join(f'{t:.2f}' for t in rows['dcm2niix'])} | {statistics.median(cpu['dcm2niix']):.2f} | "
        f"{fault_median['dcm2niix']:.0f} | {nii_mb:.0f} | {created['dcm2niix']} |",
        f"| `spine ingest` ({args.workers or os.cpu_count()} workers) | compressed Zarr store, labels, targets, "
        f"report | {median['spine ingest']:.2f} | {', '.join(f'{t:.2f}' for t in rows['spine ingest'])} | "
        f"{statistics.median(cpu['spine ingest']):.2f} | {fault_median['spine ingest']:.0f} | {store_mb:.0f} | "
        f"{created['spine ingest']} |",
        *([f"| `dcm2niix -z y` (1 process, {'pigz' if shutil.which('pigz') else 'its own zlib'}) | gzipped NIfTI "
           f"+ JSON | {median[GZIP]:.2f} | {', '.join(f'{t:.2f}' for t in rows[GZIP])} | "
           f"{statistics.median(cpu[GZIP]):.2f} | {fault_median[GZIP]:.0f} | {sizes[GZIP]:.0f} | "
           f"{created[GZIP]} |"] if rows[GZIP] else []),
        "",
        f"| `spine ingest` right after the outputs above ({n_created} files and folders) were deleted | "
        f"the same | {deleted_wall:.2f} | one run | {deleted_cpu:.2f} | | | |",
        "",
        f"**Ratio spine ingest / dcm2niix: {ratio:.2f}** (goal: <= 1.0; ratio of the medians). Median of the "
        f"{args.repeats} rounds' own ratios (each ingest run over the dcm2niix run next to it): {paired:.2f}."
        + (f" Against dcm2niix writing compressed output (`-z y`): {median['spine ingest'] / median[GZIP]:.2f}."
           if rows[GZIP] else ""),
        "",
        "| studies | peak memory, process tree (PSS) | largest single process (RSS) |",
        "|---|---|---|",
        *(f"| {n} | {pss / 1024:.0f} MiB | {rss / 1024:.0f} MiB |" for n, (pss, rss) in memory.items()),
        "",
        "CPU per DICOM file of each worker stage (one process over the same files, `stage_costs`):",
        "",
        "| " + " | ".join(stages) + " | total | dcm2niix, whole run / files |",
        "|" + "---|" * (len(stages) + 2),
        "| " + " | ".join(f"{v:.2f} ms" for v in stages.values())
        + f" | {sum(stages.values()):.2f} ms | {median['dcm2niix'] / n_files * 1000:.2f} ms |",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.docs:
        text = args.docs.read_text() if args.docs.exists() else "# Benchmarks\n"
        if START in text and END in text:
            text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        args.docs.write_text(text)


if __name__ == "__main__":
    main()
