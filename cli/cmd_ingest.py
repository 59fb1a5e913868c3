"""``spine ingest DATA_DIR OUT.zarr [--split train|test] [--workers N | --scheduler ADDRESS] [--report PATH]
[--strict] [--max-image-mb MB]``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Split(StrEnum):
    """The splits of the competition layout (``spinedata.ingest.discover.SPLITS``; a test checks they agree)."""

    train = "train"
    test = "test"


REASONS_SHOWN = 8
"""How many of the most frequent report reasons the summary lists."""


def ingest(
    data_dir: Annotated[Path, typer.Argument(help="Competition layout (CSVs + <split>_images/) or a plain DICOM folder.")],
    out: Annotated[str, typer.Argument(help="The Zarr store to create or resume: a folder (lumbar.zarr) or a URL "
                     "(s3://BUCKET/lumbar.zarr, gs://..., memory://...; credentials from the environment).")],
    split: Annotated[Split, typer.Option("--split", help="Which split of the competition layout.")] = Split.train,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Worker processes (default: all cores).")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Run the studies on this Dask cluster (tcp://HOST:PORT) instead of "
                     "local processes; its workers must see DATA_DIR at the same path, and OUT too, or reach "
                     "its URL with the credentials of their own environment (needs spine[dask])."),
    ] = None,
    report: Annotated[
        str | None,  # not a Path: Path("s3://b/r.csv") is "s3:/b/r.csv", which the library cannot tell from a path
        typer.Option("--report", help="Report CSV of everything skipped (default: OUT/ingest_report.csv); refused "
                     "inside DATA_DIR or OUT, as a folder, over a file that is not an ingest report, or as a URL."),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with 1 when the report has any line.")] = False,
    max_image_mb: Annotated[
        int | None,
        typer.Option("--max-image-mb", min=1, help="Decoded size one DICOM file may declare (MiB); a file that "
                     "declares more is a report line, never decoded (default: 2048)."),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """DICOM studies -> a geometry-true Zarr store (parallel, resumable, every skipped file reported)."""
    import sys
    from collections import Counter

    from spinedata.dicom import DEFAULT_LIMITS, ReadLimits
    from spinedata.ingest import check_report_path
    from spinedata.ingest import ingest as run_ingest
    from spinedata.ingest.paths import check_path_names, check_store_path

    split = Split(split).value  # the plain name (a caller of this function may pass a str)
    check_path_names(data_dir, "input folder")  # before any work (and before the progress bar)
    check_store_path(out)
    check_report_path(data_dir, out, report)
    limits = DEFAULT_LIMITS if max_image_mb is None else ReadLimits(max_image_bytes=max_image_mb << 20)

    if not no_progress and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            tasks: dict[str, int] = {}
            labels = {"scan": "reading headers", "ingest": "ingesting studies"}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
                bar.update(tasks[stage], completed=done, total=total)

            result = run_ingest(data_dir, out, split=split, workers=workers, scheduler=scheduler, report=report,
                                progress=progress, limits=limits)  # fmt: skip
    else:  # no bar: rich is not even imported (a batch job starts sooner)
        result = run_ingest(data_dir, out, split=split, workers=workers, scheduler=scheduler, report=report,
                            limits=limits)  # fmt: skip

    summary = (
        f"{result.store}: {result.n_written} studies written, {result.n_already} already complete, "
        f"{result.n_failed} left out; {result.n_complete} complete in the store"
    )
    if result.n_labels:
        summary += f"; {result.n_labels} labels ({result.n_labels_unresolved} not resolvable)"
    typer.echo(summary)
    if result.skipped:
        from rich.console import Console
        from rich.table import Table

        counts = Counter(line.reason.split(" (")[0].split(":")[0] for line in result.skipped)
        table = Table(title=f"{len(result.skipped)} report lines -> {result.report}")
        table.add_column("reason")
        table.add_column("lines", justify="right")
        for reason, count in counts.most_common(REASONS_SHOWN):
            table.add_row(reason, str(count))
        if len(counts) > REASONS_SHOWN:
            table.add_row("...", str(sum(c for _, c in counts.most_common()[REASONS_SHOWN:])))
        Console().print(table)
    else:
        typer.echo(f"nothing skipped; report: {result.report}")
    if result.n_complete == 0:
        typer.echo("error: nothing could be ingested (see the report)", err=True)
        raise typer.Exit(1)
    if strict and result.skipped:
        typer.echo(f"error: --strict and {len(result.skipped)} report lines (see {result.report})", err=True)
        raise typer.Exit(1)
