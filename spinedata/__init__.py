"""spinedata: lumbar spine MRI studies as geometry-true Zarr stores. NumPy, pydicom, zarr, xarray, pandas; no torch."""

from spinedata.constants import CONDITIONS, LEVELS, SEVERITIES, TARGETS
from spinedata.errors import SpineError
from spinedata.store import Dataset, open_dataset

__all__ = ["CONDITIONS", "LEVELS", "SEVERITIES", "TARGETS", "Dataset", "SpineError", "open_dataset"]
