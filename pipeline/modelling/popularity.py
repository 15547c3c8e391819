"""Error and promise width by product popularity: this model beside the newest tranche alone.

A spare-parts catalogue is mostly rare parts, and what learning from every week changes is
how well they are estimated and how wide their promises are. For bands of products by their
training rows this week, the review report shows the held-out error (where the band has
held-out rows: a product needs five rows for one) and the mean promise width at 0.9 over the
band's rows, for this model and for the fit of this week's rows alone (the same fit's
catalogue-only posterior, its promise calibrated on the same held-out rows). Over at most
SAMPLE_PRODUCTS products drawn at random, so that a million products cost what five
thousand do.
"""
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import pandas as pd

from pipeline.artifact.model import served_hours
from pipeline.artifact.promise import CHECKED_PROBABILITY, PromiseParams, Promises
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.modelling.evaluation import Split
from pipeline.modelling.promise_fit import calibrate, promise_shape

BANDS = ((1, 2, "1-2"), (3, 9, "3-9"), (10, 49, "10-49"), (50, None, "50+"))
SAMPLE_PRODUCTS = 5_000
CHUNK_ROWS = 1_000_000  # rows worked on at a time
_SAMPLE_STREAM = 0x90B


class Band(NamedTuple):
    """One band's figures for this model and for this week's rows alone (None: no rows)."""

    band: str
    products: int  # in the band
    held_out_rows: int  # of the products drawn
    mae: Optional[float]
    mae_alone: Optional[float]
    width: Optional[float]
    width_alone: Optional[float]

    def section(self) -> Dict[str, Any]:
        return self._asdict()


def by_popularity(estimator: Any, split: Split, promise: PromiseParams) -> List[Band]:
    """Return each band's figures; `promise` is this model's, whose first products are the
    estimator's (the fitted ones, as a served model lists them)."""
    k = len(estimator.product_codes_)
    if k > SAMPLE_PRODUCTS:
        rng = np.random.default_rng(_SAMPLE_STREAM)
        picked = np.sort(rng.choice(k, SAMPLE_PRODUCTS, replace=False))
        wanted = np.zeros(k + 1, dtype=bool)
        wanted[picked] = True
        split = Split(*(rows[wanted[estimator.product_index(rows[PRODUCT])]] for rows in split))
    train, test = split
    own = _figures(estimator, Promises(promise), train, test)
    other = own  # without a history, this week's rows alone are the fit itself
    if estimator.transition_ is not None:
        alone, codes = estimator.newest_only(), estimator.product_codes_
        shape = promise_shape(alone, codes, train)
        other = _figures(alone, Promises(calibrate(shape, alone, codes, test)), train, test)
    bands = []
    for low, high, name in BANDS:
        members = (estimator.rows_ >= low) & (estimator.rows_ <= (high or np.inf))
        bands.append(Band(name, int(members.sum()), int(own["rows"][members].sum()),
                          _mean(own["error"], own["rows"], members),
                          _mean(other["error"], other["rows"], members),
                          _mean(own["width"], own["all"], members),
                          _mean(other["width"], other["all"], members)))
    return bands


def _figures(estimator: Any, promises: Promises, train: pd.DataFrame, test: pd.DataFrame
             ) -> Dict[str, np.ndarray]:
    """Per product: held-out rows and their summed absolute error; all rows and the summed
    promise width at CHECKED_PROBABILITY (promise minus estimate), a chunk at a time."""
    k = len(estimator.product_codes_)
    figures = {name: np.zeros(k) for name in ("rows", "error", "all", "width")}
    for rows, held_out in ((train, False), (test, True)):
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows.iloc[start:start + CHUNK_ROWS]
            at = estimator.product_index(chunk[PRODUCT])
            x = chunk[ORDERS].to_numpy(dtype=float)
            line = estimator.predict_line(chunk)
            estimate = served_hours(line)
            width = promises.hours(at, line, x, CHECKED_PROBABILITY) - estimate
            figures["all"] += np.bincount(at, minlength=k)
            figures["width"] += np.bincount(at, width, k)
            if held_out:
                error = np.abs(chunk[HOURS].to_numpy(dtype=float) - estimate)
                figures["rows"] += np.bincount(at, minlength=k)
                figures["error"] += np.bincount(at, error, k)
    return figures


def _mean(total: np.ndarray, count: np.ndarray, members: np.ndarray) -> Optional[float]:
    rows = int(count[members].sum())
    return float(total[members].sum() / rows) if rows else None
