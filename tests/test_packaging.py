"""What a wheel ships: every package folder, the CLI as ``spine_cli``, py.typed markers, the packaged configs;
and the one-line error of a command whose extra is not installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_the_package_list_names_every_package_folder():
    folders = {"cli": "spine_cli", "spinedata": "spinedata", "spinemodels": "spinemodels"}
    found = set()
    for folder, name in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *parts)))
    assert set(SETUPTOOLS["packages"]) == found
    assert SETUPTOOLS["package-dir"] == {"spine_cli": "cli"}
    assert PYPROJECT["project"]["scripts"]["spine"] == "spine_cli.app:main"


def test_py_typed_and_configs_are_package_data():
    data = SETUPTOOLS["package-data"]
    for package, folder in (("spinedata", "spinedata"), ("spinemodels", "spinemodels"), ("spine_cli", "cli")):
        assert "py.typed" in data[package] and (REPO / folder / "py.typed").is_file()
    assert data["spinemodels.configs"] == ["*.yaml"] and data["spinemodels.configs.cpu"] == ["*.yaml"]
    assert not (REPO / "configs").exists(), "configs live in spinemodels/configs (pkg:NAME)"


def test_the_cli_imports_itself_relatively():
    """``cli`` (the source tree, the tests) and ``spine_cli`` (installed) are the same modules."""
    offenders = [p.name for p in (REPO / "cli").glob("*.py")
                 if any(line.lstrip().startswith(("from cli", "import cli")) for line in p.read_text().splitlines())]
    assert offenders == []


@pytest.mark.parametrize("args", [
    ["demo", "--workdir", "{tmp}/demo"],
    ["train", "pkg:cpu/keypoints", "--data", "{tmp}", "--out", "{tmp}/run"],
    ["locate", "{tmp}/test.zarr", "--model", "{tmp}/run", "--out", "{tmp}/coords.csv"],
    ["classify", "{tmp}/test.zarr", "--coords", "{tmp}/coords.csv", "--model", "{tmp}/run", "--out", "{tmp}/s.csv"],
])
def test_without_the_models_extra_a_command_says_so_in_one_line(tmp_path, args):
    code = "import sys\nsys.modules['torch'] = None\nfrom cli.app import main\nsys.argv[0] = 'spine'\nmain()"
    done = subprocess.run([sys.executable, "-c", code, *(a.format(tmp=tmp_path) for a in args)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"error: spine {args[0]} needs the models extra: pip install 'spine[models]' "
                           "(torch is not installed)\n")


def test_an_unknown_missing_module_keeps_its_traceback():
    from spinedata.errors import missing_extra

    assert missing_extra(ModuleNotFoundError("No module named 'nope'", name="nope"), "spine x") is None
    assert "interop extra" in str(missing_extra(ModuleNotFoundError(name="nibabel.nifti1"), "spine export"))


def test_the_cloud_extra_pins_the_releases_whose_exclusive_create_works():
    """s3fs before 2024.12.0 and botocore before 1.35.21 drop ``If-None-Match: *`` without a word, so the S3
    ingest lock would lock nothing (``spinedata.store.objectpath.CONDITIONAL_PUTS``)."""
    from importlib.metadata import version

    from spinedata.store.objectpath import CONDITIONAL_PUTS

    cloud = PYPROJECT["project"]["optional-dependencies"]["cloud"]
    assert "fsspec>=2024.12.0" in cloud
    for package, first in CONDITIONAL_PUTS.items():
        assert f"{package}>={'.'.join(map(str, first))}" in cloud
    for package, first in CONDITIONAL_PUTS.items():  # what this environment has meets the pins
        pytest.importorskip(package)
        assert tuple(int(p) for p in version(package).split(".")[:3]) >= first


def test_every_extra_named_for_a_module_exists_and_installs_it():
    from spinedata.errors import EXTRA_OF_MODULE

    extras = PYPROJECT["project"]["optional-dependencies"]
    distribution = {"SimpleITK": "simpleitk", "segmentation_models_pytorch": "segmentation-models-pytorch"}
    for module, extra in EXTRA_OF_MODULE.items():
        names = {requirement.split(">")[0].split("[")[0].split("=")[0].lower() for requirement in extras[extra]}
        assert distribution.get(module, module).lower() in names or (module == "distributed" and "dask" in names)
