"""Find gross outliers (a 9,999-hour data-entry slip) per product, so one row never blocks a week.

A row is an outlier when it lies more than OUTLIER_Z noise standard deviations from what
its product's line predicts without it (its leave-one-out residual under the pooled fit).
The noise scale is estimated robustly (median absolute deviation), and the screen is
repeated without the rows it flagged until it settles, so an outlier can move neither
the line it is judged against nor the scale it is judged with. Normal noise never reaches
8 standard deviations, so honest rows are not dropped; a slip of a few hundred hours is.
"""
from typing import NamedTuple

import numpy as np
import pandas as pd

from pipeline.estimator import PooledLinearRegressor
from pipeline.tranche import HOURS, ORDERS, PRODUCT

OUTLIER_Z = 8.0
MAX_ROUNDS = 4
CRUDE_MADS = 20.0  # only to keep the worst rows out of the first fit; the fit then decides


class Screened(NamedTuple):
    data: pd.DataFrame  # rows kept
    outliers: pd.DataFrame  # rows dropped, with their z-score
    noise_sd: float  # robust estimate of the noise, hours


def _mad_sd(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def screen_outliers(data: pd.DataFrame, z: float = OUTLIER_Z) -> Screened:
    """Return the rows to train on and the gross outliers among them."""
    hours = data[HOURS].to_numpy(dtype=float)
    if len(data) < 3:
        return Screened(data, data.iloc[0:0].assign(z=[]), float("nan"))
    spread = max(_mad_sd(hours), 1e-9)
    excluded = np.abs(hours - np.median(hours)) > CRUDE_MADS * spread
    features = data[[PRODUCT, ORDERS]]
    scores = np.zeros(len(data))
    noise = float("nan")
    for _ in range(MAX_ROUNDS):
        kept = ~excluded
        model = PooledLinearRegressor(censored_at_zero=False).fit(features[kept], hours[kept])
        idx = model.product_index(features[PRODUCT])  # once: the lookup is most of the cost
        residual = hours - model.predict_line(features, idx)
        leverage = model.leverage(features, idx)
        # Rows in the fit: leave-one-out residual; rows out of it: predictive residual.
        scaled = np.where(
            kept,
            residual / np.sqrt(np.clip(1 - leverage, 1e-9, None)),
            residual / np.sqrt(1 + leverage),
        )
        noise = max(_mad_sd(scaled[kept]), 1e-9 * max(spread, 1.0))
        scores = scaled / noise
        flagged = np.abs(scores) > z
        if np.array_equal(flagged, excluded):
            break
        excluded = flagged
    outliers = data[excluded].assign(z=scores[excluded].round(1))
    return Screened(data[~excluded], outliers, noise)
