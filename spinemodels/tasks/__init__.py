"""Built-in tasks; importing this package registers them (add new task modules here)."""

from spinemodels.tasks import grading, keypoints, master, slice_finder  # noqa: F401
