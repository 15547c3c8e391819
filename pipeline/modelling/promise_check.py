"""Judge promises: how often orders were dispatched within them, on rows that did not
calibrate them, this week's promise and last week's.

- `held_out_within`: calibrate on half the held-out rows, count the other half within their
  promises, and the other way round (cross-conformal), at each probability of a grid;
- `served_within`, `promise_comparison`: the live model's published promise judged on this
  week's held-out rows, beside the new model's;
- `coverage_warning`: coverage off by more than sampling noise allows is warned about, never
  refused; `calibration_of` summarises a model's for the review report.
"""
import math
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from pipeline.artifact.model import ProductLinearModel
from pipeline.artifact.promise import (
    CHECKED_PROBABILITY,
    PromiseParams,
    Promises,
    promise_hours,
)
from pipeline.codes.numbering import row_positions
from pipeline.codes.product_codes import ProductCodes
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.modelling.promise_fit import Codes, calibrate, calibration_split

# Where the review report draws coverage against probability (CHECKED_PROBABILITY among them).
REPORT_PROBABILITIES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
QUINTILES = 5
WARNING_Z = 3.0  # coverage this many binomial sds from the probability is warned about


class Coverage(NamedTuple):
    """The share of held-out orders dispatched within their promise at a probability."""

    probability: float
    coverage: float
    rows: int


class Calibration(NamedTuple):
    """How one model's promises held on this week's held-out orders, for the review report.

    `coverage[i]` is the share within their promise at `probabilities[i]`; `by_quintile[q]`
    the share at CHECKED_PROBABILITY among orders of the q-th quintile of orders placed
    (NaN: no such rows), `quintiles[q]` that quintile's orders placed, as "low-high".
    """

    model: str  # "this model", "live model"
    version: str
    rows: int
    probabilities: List[float]
    coverage: List[float]
    quintiles: List[str]
    by_quintile: List[float]


class HeldOut(NamedTuple):
    """Which held-out rows were dispatched within their promise, at each probability."""

    probabilities: Tuple[float, ...]
    known: np.ndarray  # per held-out row: its product has a promise
    within: np.ndarray  # (probabilities, rows): within its promise (False where not known)

    def coverages(self) -> List[Coverage]:
        """Return the share of the known rows within their promise, at each probability."""
        rows = int(self.known.sum())
        return [
            Coverage(p, float(self.within[i, self.known].mean()) if rows else float("nan"), rows)
            for i, p in enumerate(self.probabilities)
        ]


def held_out_within(
    shape: PromiseParams,
    estimator: Any,
    served_codes: Codes,
    test: pd.DataFrame,
    probabilities: Sequence[float] = (CHECKED_PROBABILITY,),
) -> HeldOut:
    """Return which held-out rows were within a promise that they did not calibrate.

    Two folds (cross-conformal): calibrate on alternate held-out rows, check the others
    against their promise, and the other way round. The promise served is calibrated on all
    of them; each half's is calibrated on half as many rows, so this errs, if at all, toward
    reporting worse coverage than served.
    """
    served_codes = ProductCodes.of(served_codes)
    halves = calibration_split(test)
    even = np.arange(len(test)) % 2 == 0
    places = [np.flatnonzero(even), np.flatnonzero(~even)]  # each half's rows in `test`
    known = np.zeros(len(test), dtype=bool)
    within = np.zeros((len(probabilities), len(test)), dtype=bool)
    for calibrating, checking, at in ((halves[0], halves[1], places[1]),
                                      (halves[1], halves[0], places[0])):
        promises = Promises(calibrate(shape, estimator, served_codes, calibrating))
        idx = row_positions(served_codes, checking[PRODUCT])
        checked = checking[idx >= 0]
        at = at[idx >= 0]
        idx = idx[idx >= 0]
        x = checked[ORDERS].to_numpy(dtype=float)
        hours = checked[HOURS].to_numpy(dtype=float)
        line = estimator.predict_line(checked)
        known[at] = True
        _check_within(promises, idx, line, x, hours, probabilities, within, at)
    return HeldOut(tuple(float(p) for p in probabilities), known, within)


def held_out_coverage(
    shape: PromiseParams,
    estimator: Any,
    served_codes: Codes,
    test: pd.DataFrame,
    probabilities: Sequence[float] = (CHECKED_PROBABILITY,),
) -> List[Coverage]:
    """Return the coverage of promises on held-out rows that did not calibrate them (two
    folds, as `held_out_within`)."""
    return held_out_within(shape, estimator, served_codes, test, probabilities).coverages()


def served_within(
    model: ProductLinearModel,
    promise: PromiseParams,
    rows: pd.DataFrame,
    probabilities: Sequence[float] = (CHECKED_PROBABILITY,),
) -> HeldOut:
    """Return which rows were within the promise the service answers with `model` and its
    artifact's `promise`: how a published model's promises held on rows it never saw."""
    idx = row_positions(model.product_codes, rows[PRODUCT])
    known = idx >= 0
    idx = idx[known]
    x = rows[ORDERS].to_numpy(dtype=float)[known]
    hours = rows[HOURS].to_numpy(dtype=float)[known]
    line = model.line(idx, x)
    promises = Promises(promise)
    within = np.zeros((len(probabilities), len(rows)), dtype=bool)
    _check_within(promises, idx, line, x, hours, probabilities, within, np.flatnonzero(known))
    return HeldOut(tuple(float(p) for p in probabilities), known, within)


def _check_within(promises: Promises, idx: np.ndarray, line: np.ndarray, x: np.ndarray,
                  hours: np.ndarray, probabilities: Sequence[float], within: np.ndarray,
                  at: np.ndarray) -> None:
    """Set within[i, at] to whether each order's hours are within its promise at the i-th
    probability, as served (the spread computed once for every probability)."""
    sigma = promises.sigma(idx, x)
    for i, p in enumerate(probabilities):
        within[i, at] = hours <= promise_hours(line, sigma, promises.score_quantile(p))


def promise_comparison(
    new: HeldOut, live_model: ProductLinearModel, test: pd.DataFrame, live: Optional[HeldOut]
) -> Tuple[Optional[float], Optional[float]]:
    """Return the share of this week's held-out orders within the live model's promise and
    within the new one's at CHECKED_PROBABILITY, on the rows both models answer (the
    champion comparison's rows).

    The live model's promise was calibrated on last week: this is how it held on the week
    that followed. None for a live model trained before promises.
    """
    both = new.known & (row_positions(live_model.product_codes, test[PRODUCT]) >= 0)

    def share(held: Optional[HeldOut]) -> Optional[float]:
        if held is None or not both.any():
            return None
        return float(held.within[held.probabilities.index(CHECKED_PROBABILITY), both].mean())

    return share(live), share(new)


def orders_quintiles(rows: pd.DataFrame) -> Tuple[np.ndarray, List[str]]:
    """Return each row's quintile of orders placed (0 to 4, equal-sized by rank, ties in file
    order) and each quintile's orders placed as "low-high"."""
    x = rows[ORDERS].to_numpy(dtype=float)
    if not len(x):
        return np.zeros(0, dtype=np.intp), []
    order = np.argsort(x, kind="stable")
    quintile = np.empty(len(x), dtype=np.intp)
    quintile[order] = np.arange(len(x)) * QUINTILES // len(x)
    labels = []
    for q in range(QUINTILES):  # five groups, not products
        seen = x[quintile == q]
        labels.append(f"{seen.min():g}-{seen.max():g}" if len(seen) else "-")
    return quintile, labels


def calibration_of(model: str, version: str, held: HeldOut, quintile: np.ndarray,
                   labels: List[str]) -> Calibration:
    """Summarise `held` for the review report: coverage at each probability, and at
    CHECKED_PROBABILITY by quintile of orders placed (`orders_quintiles` of the same rows)."""
    rows = int(held.known.sum())
    coverage = [c.coverage for c in held.coverages()]
    at = held.within[held.probabilities.index(CHECKED_PROBABILITY)]
    counts = np.bincount(quintile[held.known], minlength=QUINTILES)
    hits = np.bincount(quintile[held.known], weights=at[held.known], minlength=QUINTILES)
    by_quintile = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return Calibration(model, version, rows, list(held.probabilities), coverage, labels,
                       [float(v) for v in by_quintile])


def coverage_warning(found: Coverage, z: float = WARNING_Z) -> Optional[str]:
    """Return a warning if coverage is off by more than its sampling noise allows, or None.

    Off by more than z binomial standard deviations of a share over `rows` rows (plus the
    calibration's own 1 / rows), never refused: a good model is sometimes unlucky.
    """
    if not found.rows or not math.isfinite(found.coverage):
        return None
    p = found.probability
    allowed = z * math.sqrt(p * (1 - p) / found.rows) + 1 / found.rows
    if abs(found.coverage - p) <= allowed:
        return None
    return (
        f"promise coverage at {p:g} is {found.coverage:.1%} on {found.rows} held-out rows that "
        f"did not calibrate it: off by more than sampling noise allows (±{allowed:.1%}); "
        "promises may not hold as stated"
    )
