"""The spinedata Zarr store: layout, writer (whole studies, staged then renamed) and reader (public API).

``open_dataset(path)`` -> ``Dataset`` (``study_ids``, ``study()``, ``labels``, ``targets``) ->
``Study`` (``series``) -> ``Series`` (``description``, ``role``, ``stacks``) -> ``Stack`` (``image``,
``affine``, ``instance_numbers``, ``positions``, ``voxel_to_world``, ``world_to_voxel``, ``project``,
``read``). See ``docs/store.md``.
"""

from spinedata.store.layout import FORMAT_VERSION
from spinedata.store.reader import Dataset, Series, Stack, Study, open_dataset
from spinedata.store.writer import StudyWriter, create_or_open_store

__all__ = [
    "FORMAT_VERSION",
    "Dataset",
    "Series",
    "Stack",
    "Study",
    "StudyWriter",
    "create_or_open_store",
    "open_dataset",
]
