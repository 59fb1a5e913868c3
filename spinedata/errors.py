"""Named errors of spinedata. The CLI turns any ``SpineError`` into one line and exit code 1."""

from __future__ import annotations


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


class MultiFrameFile(DicomReadError):
    """A multi-frame file was given where one slice is expected: ``read_headers`` reads its frames."""
