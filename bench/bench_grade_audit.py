"""Severity-label audit on synthetic studies with injected wrong grades (``spine synth --grade-noise-fraction``).

Trains the small spinal grader on every fold of a store whose train.csv holds wrong grades, lists the labels
whose out-of-fold expected grade disagrees (``spinemodels.grade_audit``), compares them with the injected ones
(``synth_flaws.csv``), then trains fold 0 again without the listed labels and scores both fold-0 models on
unseen studies (spinal part of the metric; the other groups get the priors), next to a fold-0 model trained
on the noisy labels and, given ``--clean-store``, on the true ones.

    .venv/bin/spine synth bench/out/noisy --studies 80 --seed 0 --matrix 192 --grade-noise-fraction 0.1
    .venv/bin/spine ingest bench/out/noisy bench/out/noisy.zarr
    .venv/bin/python bench/bench_grade_audit.py --store bench/out/noisy.zarr --flaws bench/out/noisy/synth_flaws.csv \\
        --eval-store bench/out/val.zarr --out bench/out/grade_audit
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

import spinedata
from spinedata.constants import CONDITIONS
from spinedata.metric import score
from spinemodels.catalog import load_config
from spinemodels.grade_audit import DISAGREEMENT, audit_grades
from spinemodels.inference.classify import classify
from spinemodels.rundir import RunDir
from spinemodels.tasks.grading import calibrate_run
from spinemodels.training import train

REPO = Path(__file__).resolve().parents[1]
CONFIG = "pkg:cpu/grade_spinal"


def injected(flaws_csv: str, condition: str) -> set[tuple[str, str, str]]:
    """(study_id, condition, level) of the wrong grades written for ``condition``."""
    flaws = pd.read_csv(flaws_csv, dtype={"study_id": str})
    out = set()
    for row in flaws[flaws["flaw"] == "wrong_grade"].itertuples():
        where = row.detail.split(": ")[0]
        cond, level = where.rsplit(" ", 1)
        if cond == condition:
            out.add((row.study_id, cond, level))
    return out


def trained(store: str, out: Path, overrides: list[str]) -> Path:
    """A spinal grader run trained into ``out``, or reused (its calibration fitted again with the current code)."""
    if RunDir(out).trained_folds():
        calibrate_run(RunDir(out))
    else:
        start = time.perf_counter()
        train(load_config(CONFIG, overrides), store, out, progress=False)
        print(f"trained {out.name} in {time.perf_counter() - start:.0f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="training store with injected wrong grades")
    parser.add_argument("--flaws", required=True, help="synth_flaws.csv of that store's synthetic data")
    parser.add_argument("--eval-store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--clean-store", default=None, help="the same studies with their true grades (optional)")
    parser.add_argument("--threshold", type=float, nargs="+", default=[DISAGREEMENT],
                        help="smallest |expected grade - label| listed; one cleaned run per value")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out = Path(args.out)
    all_folds = trained(args.store, out / "all_folds", [*args.overrides, "train.folds=[0,1,2,3,4]"])
    oof, wrong = RunDir(all_folds).oof(), injected(args.flaws, CONDITIONS[0])
    runs, found_counts = {"noisy labels": trained(args.store, out / "noisy", args.overrides)}, {}
    for threshold in args.threshold:
        found = audit_grades(oof, threshold)
        findings = out / f"grade_findings_{threshold:g}.csv"
        found.to_csv(findings, index=False)
        listed = set(zip(found["study_id"], found["condition"], found["level"], strict=True))
        hits = len(listed & wrong)
        found_counts[threshold] = {"listed": len(listed), "hits": hits}
        print(f"threshold {threshold:g}: injected wrong spinal grades {len(wrong)}; listed {len(listed)}; of them "
              f"injected {hits} (precision {hits / max(len(listed), 1):.2f}, recall {hits / max(len(wrong), 1):.2f})")
        runs[f"listed labels left out (threshold {threshold:g})"] = trained(
            args.store, out / f"cleaned_{threshold:g}", [*args.overrides, f"data.exclude_labels={findings}"])
    if args.clean_store:
        runs["true labels"] = trained(args.clean_store, out / "clean", args.overrides)
    eval_ds = spinedata.open_dataset(args.eval_store)
    results = {}
    print("| fold-0 spinal grader trained on | spinal_canal_stenosis (unseen studies) |")
    print("|---|---|")
    for name, run in runs.items():
        submission, _ = classify(eval_ds, eval_ds.labels, [run], device="cpu", progress=False)
        results[name] = score(submission, eval_ds.targets)["spinal_canal_stenosis"]
        print(f"| {name} | {results[name]:.4f} |")
    (out / "result.json").write_text(json.dumps({"injected": len(wrong), "found": found_counts, "spinal": results},
                                                indent=1))


if __name__ == "__main__":
    main()
