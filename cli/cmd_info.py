"""``spine info OUT.zarr [STUDY_ID] [--json]``."""

from __future__ import annotations

from typing import Annotated

import typer

WIDE = 160
"""Console width when the output is not a terminal (a pipe or a file): tables are not squeezed to 80."""


def info(
    store: Annotated[str, typer.Argument(help="A store written by `spine ingest`: a folder or a URL (s3://BUCKET/PATH, gs://, file://, memory://, zip:///PATH.zip).")],
    study_id: Annotated[str | None, typer.Argument(help="Show this study's series and stacks.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
) -> None:
    """What is in a store: studies, series, stacks (shape, spacing, orientation, flags) and label counts."""
    import json
    import sys

    from rich.console import Console
    from rich.table import Table

    from spinedata.store import open_dataset
    from spinedata.store.summary import (
        dataset_summary,
        missing_pieces,
        study_stacks,
        study_summary,
        table_or_none,
        table_state,
    )

    console = Console(width=None if sys.stdout.isatty() else WIDE)
    dataset = open_dataset(store)

    def render(frame, title: str) -> Table:
        table = Table(title=title)
        for column in frame.columns:
            table.add_column(str(column), justify="right" if frame[column].dtype.kind in "if" else "left")
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        return table

    labels = table_or_none(dataset, "labels")
    if as_json:
        if study_id is None:
            (labels, labels_state), (targets, targets_state) = (table_state(dataset, n) for n in ("labels", "targets"))
            document = {
                "store": str(store), "attrs": dict(dataset.attrs), "checksums": bool(dataset.checksums),
                "studies": dataset_summary(dataset).to_dict(orient="records"),
                "labels": len(labels) if labels is not None else None, "labels_state": labels_state,
                "targets": len(targets) if targets is not None else None, "targets_state": targets_state,
                "damage": missing_pieces(dataset),
            }
        else:
            study = dataset.study(study_id)
            document = {"store": str(store), "study_id": study.study_id, "warnings": study.warnings,
                        "stacks": study_stacks(study, labels)}
        typer.echo(json.dumps(document, indent=1, default=_plain))
        return
    if study_id is None:
        attrs = dataset.attrs
        console.print(
            f"{store}: split {attrs.get('split')!r}, space {attrs.get('space')} {attrs.get('unit')}, "
            f"format {attrs.get('spinedata_format')}, source {attrs.get('source')}"
        )
        if not dataset.checksums:
            console.print(
                f"note: format {dataset.format} predates chunk checksums: damaged or missing chunks cannot be "
                "told from data (`spine verify` finds only unreadable ones); re-ingest into a new store to add them"
            )
        frame = dataset_summary(dataset)
        console.print(render(frame, f"{len(frame)} complete studies"))
        (labels, labels_state), (targets, targets_state) = (table_state(dataset, n) for n in ("labels", "targets"))
        console.print(
            f"labels: {labels_state if labels is None else f'{len(labels)} points'}; "
            f"targets: {targets_state if targets is None else f'{len(targets)} studies'}", soft_wrap=True,
        )  # fmt: skip
        missing = missing_pieces(dataset)
        for study, problems in missing.items():
            console.print(f"damage: study {study}: {'; '.join(problems)}", soft_wrap=True)
        if missing:
            console.print(f"{len(missing)} studies have missing chunks; `spine verify {store}` reads every chunk")
        return
    study = dataset.study(study_id)
    frame = study_summary(study, labels)
    console.print(render(frame, f"study {study.study_id}: {len(study.series)} series, {len(frame)} stacks"))
    for warning in study.warnings:
        console.print(f"warning: {warning}")


def _plain(value):
    """JSON for what ``json`` does not know: NumPy scalars and arrays, tuples of them, anything else as text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
