"""``spinemodels.locate.locate``, the import path docs/design.md promises; stage 1 lives in
``spinemodels.inference.locate``."""

from spinemodels.inference.locate import COORD_COLUMNS, LocateError, locate

__all__ = ["COORD_COLUMNS", "LocateError", "locate"]
