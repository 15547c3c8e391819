"""Fit promises at training: the hours by which a given share of orders are dispatched.

An estimate is the mean; a customer told "within X hours" needs X to hold for the share of
orders the platform asks for (0.9: nine in ten). Real noise is not always normal nor the same
at every queue, and a product with one or two rows has a line that is itself uncertain, so the
shape is learned, not assumed: split conformal prediction on normalised residuals
(Papadopoulos et al. 2002; Lei et al. 2018), written in a few lines of numpy.

Steps, at training (`fit_promise`):
1. Fit the noise's scale as a line in orders placed through the training rows' absolute
   residuals, rescaled to their root mean square: noise that grows with the queue widens the
   promise on busy queues only.
2. Per product, a noise ratio (its training rows' mean squared scaled residual over the
   catalogue's), shrunk toward 1 by as much as its rows leave uncertain, as the lines are.
3. Per product and queue, the spread of an order's hours about the line:
   sigma(x)^2 = (ratio * scale(x))^2 + the pooled posterior variance of the line at x.
4. On the held-out rows (the fit never saw them), score = residual / sigma(x) (a row floored
   at zero hours is within any promise: -inf), and keep the scores' conformal quantile,
   ceil((n + 1) p) / n, at each probability of a grid from 0.50 to 0.99.

How promises are judged (coverage on rows that did not calibrate them, week after week) is
promise_check.py; serving is artifact/promise.py (numpy only).
"""
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from pipeline.artifact.promise import PROBABILITIES, PromiseParams, Promises
from pipeline.codes.numbering import row_positions
from pipeline.codes.product_codes import ProductCodes
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.modelling.history import to_standard

Codes = Union[ProductCodes, Sequence[str]]

SCALE_MIN_ROWS = 10  # products whose residuals fit the scale line, when there are enough
RATIO_MIN_ROWS = 3  # fewer training rows: the product keeps the catalogue's noise ratio
SCALE_SAMPLE_ROWS = 1_000_000  # rows the scale line is fitted to, evenly spaced
CHUNK_ROWS = 1_000_000  # rows scaled at a time


def fit_promise(
    estimator: Any,
    served_codes: Codes,
    train: pd.DataFrame,
    calibration: pd.DataFrame,
) -> PromiseParams:
    """Return the promise parameters for the served products.

    `estimator` is the fitted PooledLinearRegressor; `served_codes` the served model's
    products in order (some may be carried forward from the live model: with no rows this
    week, their line's uncertainty is the catalogue-wide prior's and their ratio 1);
    `train` its training rows; `calibration` held-out rows it never saw.
    """
    return calibrate(promise_shape(estimator, served_codes, train), estimator, served_codes,
                     calibration)


def promise_shape(estimator: Any, served_codes: Codes, train: pd.DataFrame,
                  carried_cov: Optional[np.ndarray] = None) -> PromiseParams:
    """Return the promise parameters but the score quantiles: steps 1 to 3, on training rows.

    The served products not fitted this week (carried, after the fitted ones) have noise
    ratio 1 and the line covariances `carried_cov` (in orders placed, as their history
    leaves them), or the catalogue prior's.
    """
    served_codes = ProductCodes.of(served_codes)
    k = len(estimator.product_codes_)
    rows = np.bincount(estimator.product_index(train[PRODUCT]), minlength=k)
    # The scale line from at most SCALE_SAMPLE_ROWS evenly spaced rows (three numbers: a
    # million rows pin them down), then every row's scaled residual, a chunk at a time: at
    # 10M rows, whole-column scratch arrays were half a gigabyte.
    sample = train.iloc[::-(-len(train) // SCALE_SAMPLE_ROWS)] if len(train) else train
    x, y, residual, idx = _residuals(estimator, sample)
    positive = y > 0  # a floored row's residual is not the noise's
    use = positive & (rows[idx] >= SCALE_MIN_ROWS)
    if use.sum() < 100:
        use = positive
    scale = _fit_scale(x[use], residual[use])
    sums = np.zeros((2, k))
    square_sums = np.zeros(2)
    for start in range(0, len(train), CHUNK_ROWS):
        x, y, residual, idx = _residuals(estimator, train.iloc[start:start + CHUNK_ROWS])
        positive = y > 0
        scaled2 = (residual[positive] / _scale_at(scale, x[positive])) ** 2
        sums[0] += np.bincount(idx[positive], minlength=k)
        sums[1] += np.bincount(idx[positive], scaled2, minlength=k)
        square_sums += (float(scaled2.sum()), float((scaled2 * scaled2).sum()))
    ratio2 = _shrunk_ratios(sums[0], sums[1], square_sums)

    prior = estimator.prior_.cov
    prior_terms = np.array([prior[0, 0], prior[0, 1], prior[1, 1]], dtype=float)
    served_at = _served_positions(estimator, served_codes)
    known = served_at >= 0
    # In single precision, as served and calibrated: seven digits of each product's spread
    # are far more than its rows pin down, and a million products' artifact is 15 MB smaller.
    line_cov = np.tile(prior_terms.astype(np.float32), (len(served_codes), 1))
    if carried_cov is not None and len(carried_cov):
        _, carried_u = to_standard(np.zeros((len(carried_cov), 2)), carried_cov,
                                   estimator.x_centre_, estimator.x_scale_)
        line_cov[len(served_codes) - len(carried_cov):] = carried_u
    line_cov[known] = np.asarray(estimator.posterior_cov_)[served_at[known]]
    noise_ratio = np.ones(len(served_codes), dtype=np.float32)
    noise_ratio[known] = np.sqrt(ratio2[served_at[known]])
    return PromiseParams(
        x_centre=float(estimator.x_centre_), x_scale=float(estimator.x_scale_),
        scale_intercept=float(scale[0]), scale_slope=float(scale[1]),
        scale_floor=float(scale[2]), line_cov=line_cov, noise_ratio=noise_ratio,
        probabilities=PROBABILITIES.astype(float), score_quantiles=np.zeros(len(PROBABILITIES)),
    )


def calibrate(shape: PromiseParams, estimator: Any, served_codes: Codes,
              calibration: pd.DataFrame) -> PromiseParams:
    """Return `shape` with the conformal score quantiles of the calibration rows (step 4)."""
    served_codes = ProductCodes.of(served_codes)
    promises = Promises(shape)
    c_idx = row_positions(served_codes, calibration[PRODUCT])
    keep = c_idx >= 0
    c_rows = calibration[keep]
    c_idx = c_idx[keep]
    c_x = c_rows[ORDERS].to_numpy(dtype=float)
    c_y = c_rows[HOURS].to_numpy(dtype=float)
    scores = (c_y - estimator.predict_line(c_rows)) / promises.sigma(c_idx, c_x)
    scores[c_y <= 0] = -np.inf  # a promise is never negative: a zero is always within it
    return shape.calibrated(conformal_quantiles(scores, PROBABILITIES), len(scores))


def _fit_scale(x: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Return (intercept, slope, floor) of the noise's sd as a line in orders placed."""
    absolute = np.abs(residual)
    if len(x) >= 3 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, absolute, 1)
    else:
        slope, intercept = 0.0, float(absolute.mean()) if len(x) else 1.0
    level = float(intercept + slope * np.median(x)) if len(x) else 1.0
    floor = max(0.2 * abs(level), 1e-3)
    line = np.array([intercept, slope, floor], dtype=float)
    # Mean absolute deviation to sd: rescale so the scaled residuals have unit mean square.
    rms = float(np.sqrt(np.mean((residual / _scale_at(line, x)) ** 2))) if len(x) else 1.0
    line *= rms if rms > 0 else 1.0
    return line


def _served_positions(estimator: Any, served_codes: ProductCodes) -> np.ndarray:
    """Each served product's position among the fitted ones (-1: carried, not fitted)."""
    positions: np.ndarray = estimator.product_codes_.find_many(served_codes)
    return positions


def _scale_at(scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    at: np.ndarray = np.maximum(scale[0] + scale[1] * x, scale[2])
    return at


def _residuals(
    estimator: Any, rows: pd.DataFrame
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the rows' orders, hours, residuals about their lines, and product positions."""
    y = rows[HOURS].to_numpy(dtype=float)
    return (rows[ORDERS].to_numpy(dtype=float), y, y - estimator.predict_line(rows),
            estimator.product_index(rows[PRODUCT]))


def _shrunk_ratios(n: np.ndarray, total: np.ndarray, square_sums: np.ndarray) -> np.ndarray:
    """Return each product's squared noise ratio, shrunk toward 1 (empirical Bayes).

    From each product's count `n` and sum `total` of squared scaled residuals, and those
    residuals' overall sum and sum of squares. A product's mean over n rows varies by about
    kappa / n from sampling alone (kappa: the rows' variance of it); what varies more,
    between products, is their own noise. Each keeps the share of its deviation that the
    between-product variance explains: none when products are alike, most for a product
    with many rows.
    """
    rows = float(n.sum())
    pooled = float(square_sums[0] / rows) if rows else 1.0
    relative = np.where(n > 0, total / np.maximum(n, 1) / pooled, 1.0)
    # var(s / pooled) = E[s^2] / pooled^2 - 1
    kappa = max(float(square_sums[1] / rows) / (pooled * pooled) - 1.0, 0.0) if rows else 2.0
    enough = n >= SCALE_MIN_ROWS
    if enough.sum() < 2:
        return np.ones(len(n))
    between = float(np.var(relative[enough]) - np.mean(kappa / n[enough]))
    between = max(between, 0.0)
    weight = np.where(n >= RATIO_MIN_ROWS, between / (between + kappa / np.maximum(n, 1)), 0.0)
    ratio2: np.ndarray = np.clip(1.0 + weight * (relative - 1.0), 0.05, None)
    return ratio2


def conformal_quantiles(scores: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Return the split-conformal quantile of the scores at each probability.

    The ceil((n + 1) p)-th smallest of n scores: a new exchangeable score falls at or below
    it with probability at least p. Beyond the largest score, the largest (a promise must be
    a number of hours).
    """
    ordered = np.sort(scores)
    n = len(ordered)
    if not n:
        raise ValueError("no calibration rows: the tranche is too small for a promise")
    rank = np.minimum(np.ceil((n + 1) * np.asarray(probabilities) - 1e-9).astype(int), n)
    quantiles: np.ndarray = ordered[rank - 1]
    # All-zero calibration rows leave -inf: any promise holds, so the line itself.
    return np.where(np.isfinite(quantiles), quantiles, 0.0)


def calibration_split(test: pd.DataFrame) -> List[pd.DataFrame]:
    """Split held-out rows into calibration rows and rows that check the calibration.

    Alternate held-out rows: both halves spread over every tested product and the week.
    """
    every_other = np.arange(len(test)) % 2 == 0
    return [test[every_other].reset_index(drop=True), test[~every_other].reset_index(drop=True)]
