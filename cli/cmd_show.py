"""``spine show OUT.zarr STUDY_ID [--coords coords.csv] [--submission submission.csv] --out study.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def show(
    data: Annotated[str, typer.Argument(help="Store written by `spine ingest`: a folder or a URL (s3://...).")],
    study_id: Annotated[str, typer.Argument(help="The study to draw (as in the store's study ids).")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write (1600 x 900 pixels).")],
    coords: Annotated[Path | None, typer.Option(
        "--coords", help="Predicted points (`spine locate`): crosses on the sagittal slice, centres of the crops.")
    ] = None,
    submission: Annotated[Path | None, typer.Option(
        "--submission", help="Predicted probabilities (`spine classify`), written under each crop.")] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Reference points with study_id, condition, level, world_x/y/z (LPS mm), e.g. "
                         "synth_truth.csv (default: the store's labels).")] = None,
    truth: Annotated[Path | None, typer.Option(
        "--truth", help="True grades in train.csv form (default: the store's targets, when it has them).")] = None,
) -> None:
    """Draw one study: the mid-sagittal T2 slice with the level points and each level's crop per condition."""
    import pandas as pd

    import spinedata
    from spinedata.csvio import read_user_csv
    from spinedata.pictures import render_study

    from .outputs import output_file

    output_file(out)

    def table(path: Path | None) -> pd.DataFrame | None:
        if path is None:
            return None
        return read_user_csv(path, "table", dtype={"study_id": str, "series_id": str, "row_id": str})

    dataset = spinedata.open_dataset(data)
    truth_table = table(truth)
    if truth_table is None and len(dataset.targets):
        truth_table = dataset.targets
    written = render_study(dataset, study_id, out, coords=table(coords), labels=table(labels),
                           submission=table(submission), truth=truth_table)
    typer.echo(f"wrote {written}")
