"""``spine audit OUT.zarr --coords oof_coords.csv [--out findings.csv] [--corrected labels.csv]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def audit(
    data: Annotated[Path, typer.Argument(help="Store with labels (training split).")],
    coords: Annotated[Path, typer.Option("--coords", help="Out-of-fold coords from `spine locate --oof`.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the findings as CSV.")] = None,
    corrected: Annotated[Path | None, typer.Option(
        "--corrected", help="Write train_label_coordinates.csv with shifted levels renamed.")] = None,
) -> None:
    """Labels that disagree with out-of-fold keypoints: levels off by one, or points far from any level."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    import spinedata
    from spinemodels.audit import audit_labels, correct_labels

    if not coords.is_file():
        raise FileNotFoundError(f"{coords} is not a file; write it with `spine locate --oof`")
    dataset = spinedata.open_dataset(str(data))
    table = pd.read_csv(coords, dtype={"study_id": str, "series_id": str})
    findings = audit_labels(dataset.labels, table)
    studies = findings["study_id"].nunique()
    audited = table["study_id"].nunique()
    console = Console()
    if findings.empty:
        console.print(f"all labels of {audited} studies agree with the predicted points")
    else:
        summary = Table(title=f"{studies} of {audited} studies with suspicious labels")
        for column in ("study_id", "condition", "kind", "shift", "levels"):
            summary.add_column(column)
        for (study_id, condition, kind, shift), group in findings.groupby(
                ["study_id", "condition", "kind", "shift"], sort=True):
            summary.add_row(study_id, condition, kind, f"{shift:+d}" if kind == "shifted" else "",
                            ", ".join(group["level"]))
        console.print(summary)
    if out is not None:
        findings.to_csv(out, index=False)
        typer.echo(f"wrote {len(findings)} findings to {out}")
    if corrected is not None:
        fixed, notes = correct_labels(dataset.labels, findings)
        fixed.to_csv(corrected, index=False)
        typer.echo(f"wrote {len(fixed)} labels ({len(notes)} changed) to {corrected}")
