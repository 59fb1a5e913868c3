"""Inference: trained runs loaded for prediction (``runs``); stage 1 (``spinemodels.locate``) and stage 2
(``spinemodels.classify``) build on it."""
