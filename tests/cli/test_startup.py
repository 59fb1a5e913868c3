"""What the ``spine`` process sets up before its command runs (``cli.startup``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.commands import COMMANDS
from cli.startup import BLAS_THREADS, WITHOUT_TORCH, prepare_process

CLI = Path(__file__).resolve().parents[2] / "cli"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", sorted(WITHOUT_TORCH))
def test_commands_said_to_run_without_torch_import_none_of_the_models(name):
    assert name in COMMANDS
    modules = imported_modules(CLI / f"cmd_{name}.py")
    assert not {m for m in modules if m.split(".")[0] in {"torch", "timm", "spinemodels"}}
    for module in modules:  # the command-line modules they use, one level down
        if module.startswith("cli.") and (CLI / f"{module.split('.')[1]}.py").is_file():
            inner = imported_modules(CLI / f"{module.split('.')[1]}.py")
            assert not {m for m in inner if m.split(".")[0] in {"torch", "timm", "spinemodels"}}


def test_numpy_only_commands_run_blas_on_one_thread(monkeypatch):
    monkeypatch.delenv(BLAS_THREADS, raising=False)
    prepare_process(("ingest",))
    assert os.environ[BLAS_THREADS] == "1"


@pytest.mark.parametrize("names", [("train",), ("classify",), COMMANDS, ()])
def test_commands_that_may_use_torch_keep_blas_as_it_is(monkeypatch, names):
    monkeypatch.delenv(BLAS_THREADS, raising=False)
    prepare_process(names)
    assert BLAS_THREADS not in os.environ


def test_a_users_blas_setting_is_kept(monkeypatch):
    monkeypatch.setenv(BLAS_THREADS, "3")
    prepare_process(("ingest",))
    assert os.environ[BLAS_THREADS] == "3"


def test_the_console_script_sets_up_the_process_before_numpy_is_imported(tmp_path):
    """``main`` prepares the process for the command it runs before that command imports NumPy (OpenBLAS
    reads the variable once, when NumPy loads it)."""
    probe = (
        "import atexit, os, sys\n"
        "atexit.register(lambda: print('blas', os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy' in sys.modules))\n"
        "sys.argv = ['spine', 'info', sys.argv[1]]\n"
        "from cli.app import main\n"
        "assert 'numpy' not in sys.modules\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != BLAS_THREADS}
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "missing.zarr")], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 1 and "error:" in done.stderr  # no store there: one line, exit code 1
    assert done.stdout.split() == ["blas", "1", "True"]
