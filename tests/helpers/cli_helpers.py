"""Running ``spine`` as its console script does, for tests of one-line errors."""

from __future__ import annotations

import sys

import pytest

from cli.app import app
from cli.errors import run_app


def cli_error(monkeypatch, capsys, args: list[str]) -> str:
    """Run ``spine ARGS`` as the console script does; assert exit code 1 and return its stderr, stripped."""
    monkeypatch.setattr(sys, "argv", ["spine", *args])
    monkeypatch.delenv("SPINE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_app(app)
    assert info.value.code == 1
    return capsys.readouterr().err.strip()
