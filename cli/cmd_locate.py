"""``spine locate OUT.zarr --model RUN_DIR ... --out coords.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MAX_WARNINGS_SHOWN = 20


def locate(
    data: Annotated[str, typer.Argument(help="Store written by `spine ingest`: a folder or a URL (s3://...).")],
    model: Annotated[list[Path], typer.Option(
        "--model", help="Run directory of a slice_finder, a keypoints and optionally a fine_keypoints run "
                        "(repeatable; folds averaged), or a folder of runs (its stage-1 runs are taken, others "
                        "left).")],
    out: Annotated[Path, typer.Option("--out", help="CSV to write: one row per study, condition and level.")],
    oof: Annotated[bool, typer.Option(
        "--oof", help="Out of fold: each study only by the fold model that did not train on it.")] = False,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if available).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    refine: Annotated[bool, typer.Option(
        "--refine/--no-refine",
        help="Refine each spinal point's slice from the CSF band across the sagittal slices (falls back to "
             "the slice finder where the evidence is weak); --no-refine keeps the slice finder's slice.")] = True,
    point_refine: Annotated[bool, typer.Option(
        "--point-refine/--no-point-refine",
        help="Move each spinal point in-plane by the fine_keypoints runs given (if any); --no-point-refine "
             "keeps the keypoint model's points.")] = True,
) -> None:
    """Stage 1: the point of every condition at every level (x, y on an instance, and LPS mm)."""
    import spinedata
    from spinemodels.inference.locate import locate as run_locate
    from spinemodels.inference.locate_report import locate_summary
    from spinemodels.inference.point_refine import PointRefineOptions
    from spinemodels.inference.slice_refine import SliceRefineOptions

    from .outputs import output_file

    output_file(out)

    dataset = spinedata.open_dataset(data)
    coords, warnings = run_locate(dataset, model, oof=oof, device=device, progress=progress,
                                  slice_refine=SliceRefineOptions() if refine else None,
                                  point_refine=PointRefineOptions() if point_refine else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    coords.to_csv(out, index=False)
    studies = coords["study_id"].nunique()
    typer.echo(f"wrote {len(coords)} rows for {studies} studies to {out}")
    for line in warnings[:MAX_WARNINGS_SHOWN]:
        typer.echo(f"warning: {line}", err=True)
    if len(warnings) > MAX_WARNINGS_SHOWN:
        typer.echo(f"warning: ... and {len(warnings) - MAX_WARNINGS_SHOWN} more (see the warning column)", err=True)
    for line in locate_summary(coords, dataset.study_ids):
        typer.echo(line)
