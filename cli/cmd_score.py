"""``spine score submission.csv --truth train.csv [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def score(
    submission: Annotated[Path, typer.Argument(help="Submission CSV: row_id, normal_mild, moderate, severe.")],
    truth: Annotated[Path, typer.Option("--truth", help="Truth in train.csv form (study_id + 25 targets).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """The competition metric: mean of three weighted log losses and any_severe_spinal."""
    import json

    from rich.console import Console
    from rich.table import Table

    from spinedata.csvio import read_user_csv
    from spinedata.metric import SCORE_KEYS, SUM_ATOL, unnormalised_rows
    from spinedata.metric import score as metric_score

    for path in (submission, truth):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a file")
    sub = read_user_csv(submission, "submission", dtype={"row_id": str})
    truth_table = read_user_csv(truth, "truth", dtype={"study_id": str})
    result = metric_score(sub, truth_table)
    off = unnormalised_rows(sub)
    if off:
        typer.echo(
            f"note: {len(off)} rows do not sum to 1 (within {SUM_ATOL:g}); they were renormalised, "
            "as the competition's scorer did",
            err=True,
        )
    if as_json:
        typer.echo(json.dumps({key: result[key] for key in SCORE_KEYS}))
        return
    table = Table(title=f"{submission.name} against {truth.name}")
    table.add_column("part")
    table.add_column("weighted log loss", justify="right")
    for key in SCORE_KEYS[1:]:
        table.add_row(key, f"{result[key]:.6f}")
    table.add_section()
    table.add_row("[bold]score[/bold]", f"[bold]{result['score']:.6f}[/bold]")
    Console().print(table)
