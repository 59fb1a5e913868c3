"""``spine export STORE OUT [--format nifti|nrrd|mha] [--study ID ...] [--resample] [--points CSV]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MAX_SKIPPED_SHOWN = 20


def export(
    store: Annotated[str, typer.Argument(help="A store written by `spine ingest`: a folder or a URL (s3://...).")],
    out: Annotated[Path, typer.Argument(help="Folder to write: OUT/<study>/<series>_<stack>.<ext> and points.csv.")],
    fmt: Annotated[str, typer.Option(
        "--format", help="nifti (.nii.gz, RAS, nibabel), nrrd or mha (LPS, SimpleITK).")] = "nifti",
    study: Annotated[list[str] | None, typer.Option(
        "--study", help="Export this study (repeatable; default: every complete study).")] = None,
    resample: Annotated[bool, typer.Option(
        "--resample", help="Interpolate stacks flagged nonuniform/missing_slices/shear onto a uniform grid "
                           "(default: leave them out).")] = False,
    points: Annotated[Path | None, typer.Option(
        "--points", help="Points to map instead of the store's labels: a CSV of `spine locate` "
                         "(study_id, series_id, stack, world_x/y/z in LPS mm).")] = None,
) -> None:
    """Images for other tools: one NIfTI/NRRD/MetaImage per stack, and the labels in their voxels and RAS/LPS mm."""
    from spinedata.errors import OutputPathError
    from spinedata.export import FORMATS, ExportError, export_store
    from spinedata.store import open_dataset

    from .outputs import output_dir

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    output_dir(out, "OUT", "name a folder to write the images into")
    dataset = open_dataset(store)
    if isinstance(dataset.path, Path):  # a local store (a store at a URL cannot hold OUT)
        resolved, store_root = out.resolve(), dataset.path.resolve()
        if resolved == store_root or store_root in resolved.parents:
            raise OutputPathError(f"OUT {out} lies inside the store {store}; write the images outside it")
    table = None
    if points is not None:
        import pandas as pd

        try:
            table = pd.read_csv(points, dtype={"study_id": str, "series_id": str})
        except (OSError, ValueError) as error:
            raise ExportError(f"cannot read --points {points}: {error}") from error
    result = export_store(dataset, out, fmt=fmt, study_ids=study, resample=resample, points=table)
    typer.echo(f"wrote {len(result.images)} images and {result.points} points to {out}")
    for line in result.skipped[:MAX_SKIPPED_SHOWN]:
        typer.echo(f"warning: left out: {line}", err=True)
    if len(result.skipped) > MAX_SKIPPED_SHOWN:
        typer.echo(f"warning: ... and {len(result.skipped) - MAX_SKIPPED_SHOWN} more left out", err=True)
    if result.skipped and not resample:
        typer.echo(f"{len(result.skipped)} irregular stacks left out; --resample exports them on a uniform grid")
