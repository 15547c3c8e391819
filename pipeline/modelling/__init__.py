"""Fitting and judging the regressor: the pooled estimator, its evaluation, the catalogue it
carries from week to week, and the promise's calibration (training only: scikit-learn and
scipy live here and below, never in the service)."""
