"""``spine classify OUT.zarr --coords coords.csv --model RUN_DIR ... --out submission.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MAX_WARNINGS_SHOWN = 20


def classify(
    data: Annotated[str, typer.Argument(help="Store written by `spine ingest`: a folder or a URL (s3://...).")],
    coords: Annotated[Path, typer.Option("--coords", help="Points of every condition and level (`spine locate`).")],
    model: Annotated[list[Path], typer.Option(
        "--model", help="Run directory of a grade_spinal / grade_foraminal / grade_subarticular run "
                        "(repeatable; folds and runs of a group are averaged), or a folder of runs (its grading runs "
                        "are taken, others left).")],
    out: Annotated[Path, typer.Option("--out", help="Submission CSV to write: row_id, normal_mild, moderate, severe.")],
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if available).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Stage 2: the severity of every condition at every level, 25 rows per study."""
    import spinedata
    from spinedata.csvio import read_user_csv
    from spinemodels.inference.classify import classify as run_classify

    from .outputs import output_file

    output_file(out)

    if not coords.is_file():
        raise FileNotFoundError(f"coords file {coords} not found; write it with `spine locate`")
    dataset = spinedata.open_dataset(data)
    points = read_user_csv(coords, "coords file", dtype={"study_id": str, "series_id": str})
    submission, warnings = run_classify(dataset, points, model, device=device, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    submission.to_csv(out, index=False)
    typer.echo(f"wrote {len(submission)} rows for {len(submission) // 25} studies to {out}")
    for line in warnings[:MAX_WARNINGS_SHOWN]:
        typer.echo(f"warning: {line}", err=True)
    if len(warnings) > MAX_WARNINGS_SHOWN:
        typer.echo(f"warning: ... and {len(warnings) - MAX_WARNINGS_SHOWN} more", err=True)
