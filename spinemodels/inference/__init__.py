"""Inference with trained runs, apart from training.

- ``runs``: a run's trained folds loaded for prediction (``FoldModels``), the runs a command takes;
- stage 1 (``spine locate``): ``locate`` (per study: fits, fallbacks, the rows of coords.csv),
  ``stage_one_networks`` (what the slice finder and keypoint runs say about one stack), ``slice_refine``
  (the sub-slice position of the spinal points), ``anatomy_checks`` (order, spacing, CSF; confidence),
  ``locate_report`` (what locate leaves uncertain, in words);
- stage 2 (``spine classify``): ``classify`` (crops, graders, master, priors: the submission).

``spinemodels.locate.locate`` and ``spinemodels.classify.classify`` (docs/design.md) name the two entry points.
"""
