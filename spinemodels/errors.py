"""Named errors of spinemodels; like every ``SpineError`` the CLI prints them as one ``error:`` line."""

from __future__ import annotations

from spinedata.errors import OptionError, SpineError


class ConfigError(OptionError):
    """A training configuration (file, override or the runs it names) is invalid."""


class RunDirError(SpineError):
    """A run directory is missing, incomplete or belongs to another config."""


class LocateError(SpineError):
    """The models given to ``locate`` cannot be used together."""
