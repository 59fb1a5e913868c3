"""``spinemodels.classify.classify``, the import path docs/design.md promises; stage 2 lives in
``spinemodels.inference.classify``."""

from spinemodels.inference.classify import ClassifyError, classify

__all__ = ["ClassifyError", "classify"]
