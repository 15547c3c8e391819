"""Find gross outliers (a 9,999-hour data-entry slip) per product, so one row never blocks a week.

A row is an outlier when it lies more than OUTLIER_Z noise standard deviations from what
its product's line predicts without it (its leave-one-out residual under the pooled fit).
The noise scale is estimated robustly (median absolute deviation), and the screen is
repeated without the rows it flagged until it settles, so an outlier can move neither
the line it is judged against nor the scale it is judged with. Normal noise never reaches
8 standard deviations, so honest rows are not dropped; a slip of a few hundred hours is.
"""
from typing import Any, List, NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd

from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.codes.numbering import factorize_products
from pipeline.modelling.pooling import (
    Posterior,
    Prior,
    Sums,
    fit_prior,
    grouped_sums,
    line_values,
    posterior,
    prior_sample,
    row_variances,
)

OUTLIER_Z = 8.0
MAX_ROUNDS = 4
MAD_ROWS = 1_000_000
CHUNK_ROWS = 1_000_000  # rows judged at a time: a few MB of scratch, reused
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


class _Rows(NamedTuple):
    """The columns the screen reads, as arrays: product numbers, standardised orders, hours."""

    codes: np.ndarray
    u: np.ndarray
    hours: np.ndarray


def _chunks(rows: int) -> List[slice]:
    return [slice(start, start + CHUNK_ROWS) for start in range(0, rows, CHUNK_ROWS)]


def _sums(codes: np.ndarray, orders: np.ndarray, centre: float, scale: float,
          hours: np.ndarray, k: int) -> Sums:
    """Sum every product's statistics a chunk at a time (no array of the rows' length)."""
    total = Sums(*(np.zeros(k) for _ in Sums._fields))
    for rows in _chunks(len(codes)):
        part = grouped_sums(codes[rows], (orders[rows] - centre) / scale, hours[rows], k)
        for into, add in zip(total, part):
            into += add  # in place: a million products' sums are not copied each chunk
    return total


def _scaled_residuals(
    rows: _Rows, excluded: np.ndarray, post: Posterior, noise_var: float
) -> np.ndarray:
    """Return each row's residual over its standard deviation, in noise units.

    Rows in the fit: the leave-one-out residual, over sqrt(1 - h); rows out of it: the
    predictive residual, over sqrt(1 + h); h is the row's line variance over the noise's.
    """
    residual: np.ndarray = rows.hours - line_values(post.mean, rows.codes, rows.u)
    ratio = row_variances(post.cov, rows.codes, rows.u)
    ratio /= noise_var
    np.negative(ratio, out=ratio, where=~excluded)
    ratio += 1
    residual /= np.sqrt(np.clip(ratio, 1e-9, None, out=ratio), out=ratio)
    return residual


def screen_outliers(data: pd.DataFrame, z: float = OUTLIER_Z) -> Screened:
    """Return the rows to train on and the gross outliers among them.

    At 10M rows this works a million rows at a time, so it never holds more than a column
    of its own: each round fits the pooled lines to every row's sums less those of the
    rows it leaves out (a handful), takes the noise scale from an even sample of rows, and
    only then judges every row.
    """
    hours = data[HOURS].to_numpy(dtype=float)
    if len(data) < 3:
        return Screened(data, data.iloc[0:0].assign(z=[]), float("nan"))
    median, spread = _median_and_mad_sd(hours)
    spread = max(spread, 1e-9)
    excluded = (hours > median + CRUDE_MADS * spread) | (hours < median - CRUDE_MADS * spread)
    codes, products = factorize_products(data[PRODUCT])
    orders = data[ORDERS].to_numpy(dtype=float)
    centre, scale = float(orders.mean()), float(orders.std()) or 1.0
    k = len(products)
    every = _sums(codes, orders, centre, scale, hours, k)
    sample = slice(None, None, -(-len(data) // MAD_ROWS))

    def rows(which: Any) -> _Rows:
        return _Rows(codes[which], (orders[which] - centre) / scale, hours[which])

    prior: Optional[Prior] = None
    noise = float("nan")
    post: Optional[Posterior] = None
    for _ in range(MAX_ROUNDS):
        left_out = grouped_sums(*rows(np.flatnonzero(excluded)), k)
        sums = Sums(*(a - b for a, b in zip(every, left_out)))
        prior = fit_prior(prior_sample(sums), start_from=prior)
        post = posterior(sums, prior)
        kept = ~excluded[sample]
        scaled = _scaled_residuals(rows(sample), excluded[sample], post, prior.noise_var)
        noise = max(_median_and_mad_sd(scaled[kept])[1], 1e-9 * max(spread, 1.0))
        flagged = np.empty(len(data), dtype=bool)
        for chunk in _chunks(len(data)):
            scaled = _scaled_residuals(rows(chunk), excluded[chunk], post, prior.noise_var)
            flagged[chunk] = np.abs(scaled) > z * noise
        if np.array_equal(flagged, excluded):
            break
        excluded = flagged
    if not excluded.any() or post is None or prior is None:
        return Screened(data, data.iloc[0:0].assign(z=[]), noise)
    out = np.flatnonzero(excluded)
    scores = _scaled_residuals(rows(out), excluded[out], post, prior.noise_var) / noise
    outliers = data.iloc[out].assign(z=scores.round(1))
    return Screened(data[~excluded].reset_index(drop=True), outliers, noise)
