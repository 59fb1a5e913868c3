"""The dependency direction of docs/design.md: spinedata (and the CLI's start-up) never import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "modules",
    [
        "spinedata, spinedata.synth, spinedata.ingest, spinedata.store, spinedata.metric, spinedata.crops",
        "cli.app",
    ],
)
def test_import_does_not_load_torch(modules):
    code = f"import sys\nimport {modules}\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"importing {modules} loaded torch: {result.stdout}"


def test_spinedata_sources_never_mention_torch_imports():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "spinedata"
    offenders = [
        str(path.relative_to(root.parent))
        for path in root.rglob("*.py")
        if any(line.lstrip().startswith(("import torch", "from torch")) for line in path.read_text().splitlines())
    ]
    assert offenders == []


HEAVY_FOR_INGEST = ("pandas", "zarr", "xarray", "pydicom", "torch")
"""Imports that `spine ingest` and its workers must not pay for (about a second of start-up together)."""


def test_ingest_path_starts_without_heavy_imports():
    code = (
        "import sys\nimport cli.app, cli.cmd_ingest, spinedata.ingest.run, spinedata.ingest.worker\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY_FOR_INGEST)!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"the ingest path imported {result.stdout.strip()}"
