"""``spine audit OUT.zarr [--coords oof_coords.csv] [--out findings.csv] [--corrected labels.csv]
[--grades RUN_DIR ...] [--grade-findings grades.csv]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def audit(
    data: Annotated[str, typer.Argument(help="Store with labels (training split); a folder or a URL (s3://...).")],
    coords: Annotated[Path | None, typer.Option("--coords", help="Out-of-fold coords from `spine locate --oof`.")
                      ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the findings as CSV.")] = None,
    corrected: Annotated[Path | None, typer.Option(
        "--corrected", help="Write train_label_coordinates.csv with shifted levels renamed.")] = None,
    grades: Annotated[list[Path] | None, typer.Option(
        "--grades", help="Grader run directory (repeatable): severity labels far from its out-of-fold grades.")
    ] = None,
    grade_findings: Annotated[Path | None, typer.Option(
        "--grade-findings", help="Write the suspicious severity labels as CSV (data.exclude_labels reads it).")
    ] = None,
    min_disagreement: Annotated[float | None, typer.Option(
        "--min-disagreement", min=0.0, max=2.0, help="Smallest |expected grade - label| listed (default 1.3).")
    ] = None,
) -> None:
    """Labels that disagree with out-of-fold predictions: points (levels off by one, points far from any
    level; --coords) and severities (--grades)."""
    from .outputs import output_file

    if coords is None and not grades:
        raise typer.BadParameter("give --coords (point labels) and/or --grades (severity labels)")
    for path, option in ((out, "--out"), (corrected, "--corrected"), (grade_findings, "--grade-findings")):
        output_file(path, option)
    if grades:
        audit_severities(grades, grade_findings, min_disagreement)
    if coords is not None:
        audit_points(data, coords, out, corrected)


def audit_severities(runs: list[Path], findings_csv: Path | None, threshold: float | None) -> None:
    """List (and write) severity labels whose out-of-fold grades disagree."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from spinemodels.grade_audit import DISAGREEMENT, audit_grades
    from spinemodels.rundir import RunDir

    oof = pd.concat([RunDir(run).oof().assign(run=str(run)) for run in runs], ignore_index=True)
    threshold = DISAGREEMENT if threshold is None else threshold
    found = audit_grades(oof, threshold)
    labelled = int((oof["target"] >= 0).sum())
    table = Table(title=f"{len(found)} of {labelled} severity labels with |expected grade - label| >= {threshold:g}")
    for column in ("study_id", "condition", "level", "label", "expected_grade", "p_label"):
        table.add_column(column)
    for row in found.head(20).itertuples():
        table.add_row(row.study_id, row.condition, row.level, row.label, f"{row.expected_grade:.2f}",
                      f"{row.p_label:.3f}")
    Console().print(table)
    if findings_csv is not None:
        found.to_csv(findings_csv, index=False)
        typer.echo(f"wrote {len(found)} severity findings to {findings_csv}")


def audit_points(data: str, coords: Path, out: Path | None, corrected: Path | None) -> None:
    """List (and write) point labels that disagree with out-of-fold keypoints."""
    from rich.console import Console
    from rich.table import Table

    import spinedata
    from spinedata.csvio import read_user_csv
    from spinemodels.audit import audit_labels, correct_labels

    if not coords.is_file():
        raise FileNotFoundError(f"{coords} is not a file; write it with `spine locate --oof`")
    dataset = spinedata.open_dataset(data)
    table = read_user_csv(coords, "coords file", dtype={"study_id": str, "series_id": str})
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
