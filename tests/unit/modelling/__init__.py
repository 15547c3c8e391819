"""The estimator, its evaluation, the catalogue, the outlier screen and the promises'
calibration."""
