"""``spine synth OUT_DIR --studies N --seed S [--test-studies M] [...] [--preview FILE.png]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fraction(flag: str, text: str):
    """A share option, from 0 to 1."""
    return typer.Option(flag, min=0.0, max=1.0, help=text)


def synth(
    out_dir: Annotated[Path, typer.Argument(help="New folder for the dataset (competition layout).")],
    studies: Annotated[int, typer.Option("--studies", min=0, help="Training studies.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same files.")] = 0,
    test_studies: Annotated[int, typer.Option("--test-studies", min=0, help="Test studies (no labels).")] = 0,
    off_by_one_fraction: Annotated[float, fraction(
        "--off-by-one-fraction", "Share of training studies whose labels sit one level off.")] = 0.0,
    missing_series_fraction: Annotated[float, fraction(
        "--missing-series-fraction", "Share of studies lacking one series type.")] = 0.0,
    extra_series_fraction: Annotated[float, fraction(
        "--extra-series-fraction", "Share of studies with a second series of one type.")] = 0.0,
    grade_noise_fraction: Annotated[float, fraction(
        "--grade-noise-fraction", "Share of training severities written to train.csv as another grade.")] = 0.0,
    class_balance: Annotated[
        str, typer.Option("--class-balance", help="Severity priors: 'real' (like the competition) or 'balanced'.")
    ] = "real",
    matrix: Annotated[
        int | None, typer.Option("--matrix", min=32, max=1024,
                                 help="One in-plane matrix size for every series (default: 320-384 sagittal, "
                                      "256-320 axial).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    preview: Annotated[
        Path | None, typer.Option("--preview", help="Also write a picture of the first training study (PNG).")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Write synthetic lumbar spine MRI studies (DICOM + CSVs + synth_truth.csv) in the competition layout."""
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from spinedata.synth import generate
    from spinedata.synth.preview import render_preview

    from .outputs import output_dir

    output_dir(out_dir, "OUT_DIR")

    overrides: dict = {
        "off_by_one_fraction": off_by_one_fraction,
        "missing_series_fraction": missing_series_fraction,
        "extra_series_fraction": extra_series_fraction,
        "grade_noise_fraction": grade_noise_fraction,
        "class_balance": class_balance,
    }
    if matrix is not None:
        overrides.update(sagittal_matrices=(matrix,), axial_matrices=(matrix,))
    show = not no_progress and sys.stderr.isatty()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show) as bar:
        task = bar.add_task("rendering studies", total=studies + test_studies)
        result = generate(out_dir, studies, seed, n_test_studies=test_studies, workers=workers,
                          progress=lambda done, total: bar.update(task, completed=done, total=total), **overrides)
    typer.echo(f"{result.out_dir}: {len(result.train_study_ids)} train + {len(result.test_study_ids)} test studies, "
               f"{result.n_series} series, {result.n_files} DICOM files in {result.seconds:.1f} s")
    if preview is not None:
        if not result.train_study_ids:
            typer.echo("error: --preview needs at least one training study (labels are drawn from them)", err=True)
            raise typer.Exit(1)
        typer.echo(f"preview: {render_preview(out_dir, preview)}")
