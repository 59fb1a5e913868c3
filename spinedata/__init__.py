"""spinedata: lumbar spine MRI studies as geometry-true Zarr stores. NumPy, pydicom, zarr, xarray, pandas; no torch.

``Dataset`` and ``open_dataset`` are imported on first use (PEP 562), so that modules which need neither
(``spine ingest`` and its worker processes) start without zarr, pandas and xarray.
"""

from spinedata.constants import CONDITIONS, LEVELS, SEVERITIES, TARGETS
from spinedata.errors import SpineError

__all__ = ["CONDITIONS", "LEVELS", "SEVERITIES", "TARGETS", "Dataset", "SpineError", "open_dataset"]


def __getattr__(name: str):
    if name in ("Dataset", "open_dataset"):
        from spinedata import store

        return getattr(store, name)
    raise AttributeError(f"module 'spinedata' has no attribute {name!r}")
