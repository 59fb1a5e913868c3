"""``spine ngff STORE [--levels N]``."""

from __future__ import annotations

from typing import Annotated

import typer


def ngff(
    store: Annotated[str, typer.Argument(help="A store written by `spine ingest` (any version): a folder or a URL (s3://...).")],
    levels: Annotated[int | None, typer.Option(
        "--levels", min=0, metavar="N",
        help="Give every stack N downsampled levels for viewers (2x, 4x, ... in-plane; fewer where a level would "
             "get under 64 pixels); 0 removes them. Default: levels as they are.")] = None,
) -> None:  # fmt: skip
    """Add the OME-Zarr (NGFF 0.5) metadata to every stack of a store written without it, in place, and
    optionally downsampled levels (`--levels`).

    Rewrites only the stacks' group metadata, and with `--levels` writes or removes the level arrays
    (never `image`); safe to run again or after an interruption; refuses a store that an ingest is
    writing. See docs/store.md, "OME-Zarr (NGFF)"."""
    from spinedata.store.migrate import add_ngff

    report = add_ngff(store, levels=levels)
    kept = report.stacks - report.written
    line = (f"{store}: {report.studies} studies, {report.stacks} stacks; NGFF metadata written to {report.written}"
            + (f", {kept} already had it" if kept else ""))  # fmt: skip
    if levels is not None:
        line += f"; level arrays written: {report.levels_written}, removed: {report.levels_removed}"
    typer.echo(line)
