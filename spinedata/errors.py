"""Named errors of spinedata. The CLI turns any ``SpineError`` into one line and exit code 1."""

from __future__ import annotations

import importlib
from types import ModuleType


class SpineError(Exception):
    """Base of every error the user can act on (bad input, missing files, wrong options)."""


class DicomReadError(SpineError):
    """A file could not be read as a usable DICOM image."""


class GeometryError(SpineError):
    """Positions or orientations do not form a valid geometry."""


class StoreError(SpineError):
    """A store is missing, incomplete or of an unknown format version."""


class OptionError(SpineError):
    """An option is invalid (a crop size, a synthetic-study option, a table passed in); training configs raise
    ``spinemodels.errors.ConfigError``, a subclass."""


class DataLayoutError(SpineError):
    """An input folder or its CSVs do not follow the expected layout (missing columns, unreadable CSV)."""


class OutputPathError(SpineError):
    """An output path would destroy data: it lies inside an input or the store, or names a folder or an input."""


class ClusterError(SpineError):
    """A Dask cluster cannot be used: its scheduler cannot be reached, it has no worker, or its workers do not
    see the input folder or the store (a folder at the same path, or a URL with their own credentials)."""


class SpineWarning(UserWarning):
    """Base of the warnings spinedata gives; the CLI prints each as one ``warning: ...`` line."""


class ClusterWarning(SpineWarning):
    """Tasks of an ingest that was left early may still run on Dask workers (they cannot be stopped from the
    client)."""


class MultiFrameFile(DicomReadError):
    """A multi-frame file was given where one slice is expected: ``read_headers`` reads its frames."""


EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "models",
    "torchvision": "models",
    "timm": "models",
    "segmentation_models_pytorch": "models",
    "nibabel": "interop",
    "SimpleITK": "interop",
    "torchio": "interop",
    "monai": "interop",
    "dask": "dask",
    "distributed": "dask",
    "fsspec": "cloud",
    "s3fs": "cloud",
    "botocore": "cloud",
    "gcsfs": "gcs",
}
"""Top-level module -> the extra of the ``spine`` distribution that installs it (pyproject
``[project.optional-dependencies]``)."""


class ExtraNotInstalled(SpineError):
    """A library of an optional extra (``models``, ``interop``, ``dask``, ``cloud``, ``gcs``) is not installed."""


def missing_extra(error: ModuleNotFoundError, what: str) -> ExtraNotInstalled | None:
    """The one-line error for ``error`` when it is a module of an extra (``EXTRA_OF_MODULE``): ``what`` (e.g.
    ``spine demo``) needs that extra and how to install it; ``None`` for any other module.

    >>> str(missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"), "spine train"))
    "spine train needs the models extra: pip install 'spine[models]' (torch is not installed)"
    """
    top = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return ExtraNotInstalled(f"{what} needs the {extra} extra: pip install 'spine[{extra}]' ({top} is not installed)")



def import_extra(module: str, what: str) -> ModuleType:
    """Import ``module`` of an optional extra; ``ExtraNotInstalled`` (one line, naming the extra) when it is
    missing, ``what`` being what needs it (e.g. ``ingest --scheduler``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        known = missing_extra(error, what)
        if known is None:
            raise
        raise known from error
