"""What several benchmark scripts share: the ingest benchmark's dataset, the ``--no-settle`` option, markdown
tables. (Scripts run from the repository root import it as ``common``, beside ``settle``.)"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

from settle import wait_until_settled

INGEST_DATA = Path("bench/out/ingest/data20")
"""The dataset ``bench/bench_ingest.py`` writes (20 synthetic studies), read by the other ingest benchmarks."""


def ingest_data_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of ``doc``, with ``--data`` (the ingest benchmark's dataset)
    and ``--no-settle``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=INGEST_DATA)
    add_settle_option(parser)
    return parser


def add_settle_option(parser: argparse.ArgumentParser) -> None:
    """``--no-settle``: time at once instead of waiting for the file system to settle (``settle.py``)."""
    parser.add_argument("--no-settle", action="store_true", help="time at once, even right after a deletion")


def settle(args: argparse.Namespace) -> None:
    """Wait until the file system has settled after the last deletion, unless ``--no-settle``."""
    if not args.no_settle:
        wait_until_settled()


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A markdown table: the header, its rule, then each row as it comes (cells printed as given)."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
