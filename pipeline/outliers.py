"""Find gross outliers (a 9,999-hour data-entry slip) per product, so one row never blocks a week.

A row is an outlier when it lies more than OUTLIER_Z noise standard deviations from what
its product's line predicts without it (its leave-one-out residual under the pooled fit).
The noise scale is estimated robustly (median absolute deviation), and the screen is
repeated without the rows it flagged until it settles, so an outlier can move neither
the line it is judged against nor the scale it is judged with. Normal noise never reaches
8 standard deviations, so honest rows are not dropped; a slip of a few hundred hours is.
"""
from typing import NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd

from pipeline.estimator import (
    Prior,
    Sums,
    factorize_products,
    fit_prior,
    grouped_sums,
    line_values,
    posterior,
    row_variances,
)
from pipeline.tranche import HOURS, ORDERS, PRODUCT

OUTLIER_Z = 8.0
MAX_ROUNDS = 4
MAD_ROWS = 1_000_000
CRUDE_MADS = 20.0  # only to keep the worst rows out of the first fit; the fit then decides


class Screened(NamedTuple):
    data: pd.DataFrame  # rows kept
    outliers: pd.DataFrame  # rows dropped, with their z-score
    noise_sd: float  # robust estimate of the noise, hours


def _median_and_mad_sd(
    values: np.ndarray, kept: Optional[np.ndarray] = None
) -> Tuple[float, float]:
    """Return the median and the robust standard deviation of the (kept) values.

    Over at most MAD_ROWS evenly spaced rows: from a million rows the estimate is within
    about 0.1% of all rows' (its standard error), and two medians of 10M rows cost more
    than the rest of a round.
    """
    step = -(-len(values) // MAD_ROWS)
    values = values[::step] if kept is None else values[::step][kept[::step]]
    median = float(np.median(values))
    return median, float(1.4826 * np.median(np.abs(values - median)))


def screen_outliers(data: pd.DataFrame, z: float = OUTLIER_Z) -> Screened:
    """Return the rows to train on and the gross outliers among them.

    Works on arrays, in place where it can: a 10M-row tranche is screened with a few
    columns' worth of memory. Each round fits the pooled lines to every row's sums minus
    those of the rows it leaves out (a handful), so the rows are summed once.
    """
    hours = data[HOURS].to_numpy(dtype=float)
    if len(data) < 3:
        return Screened(data, data.iloc[0:0].assign(z=[]), float("nan"))
    median, spread = _median_and_mad_sd(hours)
    spread = max(spread, 1e-9)
    excluded = np.abs(hours - median) > CRUDE_MADS * spread
    codes, products = factorize_products(data[PRODUCT])
    orders = data[ORDERS].to_numpy(dtype=float)
    u = (orders - orders.mean()) / (float(orders.std()) or 1.0)
    k = len(products)
    every = grouped_sums(codes, u, hours, k)
    prior: Optional[Prior] = None
    scores = np.zeros(len(data))
    noise = float("nan")
    for _ in range(MAX_ROUNDS):
        out = np.flatnonzero(excluded)
        left_out = grouped_sums(codes[out], u[out], hours[out], k)
        sums = Sums(*(a - b for a, b in zip(every, left_out)))
        prior = fit_prior(sums, start_from=prior)
        post = posterior(sums, prior)
        scores = line_values(post.mean, codes, u)
        np.subtract(hours, scores, out=scores)  # the residual
        # Rows in the fit: leave-one-out residual, over sqrt(1 - h); rows out of it:
        # predictive residual, over sqrt(1 + h); h is the row's variance over the noise's.
        spread_of_line = row_variances(post.cov, codes, u)
        spread_of_line /= prior.noise_var
        np.negative(spread_of_line, out=spread_of_line, where=~excluded)
        spread_of_line += 1
        np.sqrt(np.clip(spread_of_line, 1e-9, None, out=spread_of_line), out=spread_of_line)
        scores /= spread_of_line
        del spread_of_line
        noise = max(_median_and_mad_sd(scores, ~excluded)[1], 1e-9 * max(spread, 1.0))
        scores /= noise
        flagged = np.abs(scores) > z
        if np.array_equal(flagged, excluded):
            break
        excluded = flagged
    if not excluded.any():
        return Screened(data, data.iloc[0:0].assign(z=[]), noise)
    outliers = data[excluded].assign(z=scores[excluded].round(1))
    return Screened(data[~excluded].reset_index(drop=True), outliers, noise)
