"""The examples in docstrings (``>>>``) run and print what they show."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for package in ("spinedata", "spinemodels", "cli")
    for path in (REPO / package).rglob("*.py")
    if ">>>" in path.read_text()
)


def test_docstring_examples_are_found():
    assert "spinedata.metric" in MODULES and "spinedata.crops" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
