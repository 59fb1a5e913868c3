"""Built-in tasks; importing this package registers them (add new task modules here)."""

from spinemodels.tasks import fine_keypoints, grading, keypoints, master, slice_finder

BUILTIN_TASKS = (fine_keypoints, grading, keypoints, master, slice_finder)
"""The modules of the built-in tasks (each registers its tasks when imported)."""
