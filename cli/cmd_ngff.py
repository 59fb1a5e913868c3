"""``spine ngff STORE``."""

from __future__ import annotations

from typing import Annotated

import typer


def ngff(
    store: Annotated[str, typer.Argument(help="A store written by `spine ingest` (any version): a folder or a URL (s3://...).")],
) -> None:
    """Add the OME-Zarr (NGFF 0.5) metadata to every stack of a store written without it, in place.

    Rewrites only the stacks' group metadata (no pixels); safe to run again or after an interruption;
    refuses a store that an ingest is writing. See docs/store.md, "OME-Zarr (NGFF)"."""
    from spinedata.store.migrate import add_ngff

    report = add_ngff(store)
    typer.echo(
        f"{store}: {report.studies} studies, {report.stacks} stacks; NGFF metadata written to {report.written}"
        + (f", {report.stacks - report.written} already had it" if report.stacks - report.written else "")
    )
