"""``spine verify STORE [--json]``."""

from __future__ import annotations

from typing import Annotated

import typer


def verify(
    store: Annotated[str, typer.Argument(help="A store written by `spine ingest`: a folder or a URL (s3://...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of lines.")] = False,
) -> None:
    """Read every array of every study and the tables; list damaged or missing pieces (exit 1 if any)."""
    import json

    from spinedata.store.verify import verify_store

    report = verify_store(store)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        for note in report.notes:
            typer.echo(f"note: {note}", err=True)
        for key, problems in report.damage.items():
            typer.echo(f"{key}: {len(problems)} damaged or missing")
            for problem in problems:
                typer.echo(f"  {problem}")
        typer.echo(
            f"{report.store}: format {report.format}, {report.studies} studies, {report.arrays} arrays read; "
            + ("no damage found" if report.ok else f"damage in {', '.join(report.damage)}")
        )
    if not report.ok:
        raise typer.Exit(1)
