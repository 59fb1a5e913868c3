"""Built-in tasks; importing this package registers them (add new task modules here)."""

from spinemodels.tasks import grading, keypoints, master, slice_finder

BUILTIN_TASKS = (grading, keypoints, master, slice_finder)
"""The modules of the built-in tasks (each registers its tasks when imported)."""
