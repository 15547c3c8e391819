"""Fitting and judging the regressor: the pooled estimator and its mathematics, gross
outliers, evaluation, the catalogue carried from week to week, and the promise's calibration
and checks (training only: scikit-learn and scipy live here and below, never in the
service)."""
