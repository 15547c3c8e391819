"""Promises: the hours by which a given share of such orders are dispatched, as served.

An estimate is the mean; a customer told "within X hours" needs X to hold for the share of
orders the platform asks for (0.9: nine in ten). Training learns the promise's shape
(modelling/promise_fit.py: split conformal prediction on residuals normalised by a scale that
may grow with the queue and by the pooled line's own uncertainty); the artifact carries it as
one dict of plain numpy arrays and floats, and this module serves it with numpy and plain
floats only (the service imports neither pandas, scikit-learn nor scipy):

    promise = max(0, line + sigma(x) * Q(p)),
    sigma(x)^2 = (ratio[product] * max(a + b x, floor))^2 + var line[product](x),

Q being the calibrated score quantile at probability p, linear between a grid's 0.50..0.99.
"""
import math
from bisect import bisect_left
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np

PROMISE_METHOD = "split-conformal/normalised-residuals/1"
MIN_PROBABILITY, MAX_PROBABILITY = 0.5, 0.99
PROBABILITIES = np.round(np.arange(50) / 100 + 0.5, 2)  # 0.50, 0.51, ... 0.99
CHECKED_PROBABILITY = 0.9  # what the weekly checks, the metadata and the gauge report
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


class Promises:
    """The promise parameters, ready to serve: per product arrays and a scalar path."""

    def __init__(self, params: Dict[str, Any], products: int) -> None:
        check_promise_params(params, products)
        self.x_centre = float(params["x_centre"])
        self.x_scale = float(params["x_scale"])
        self.scale = (
            float(params["scale_intercept"]), float(params["scale_slope"]),
            float(params["scale_floor"]),
        )
        cov = np.asarray(params["line_cov"])  # single floats: widened a column at a time
        self.c0, self.c1, self.c2 = (np.ascontiguousarray(cov[:, j], dtype=float)
                                     for j in range(3))
        self.ratio = np.asarray(params["noise_ratio"], dtype=float)
        self.probabilities = [float(p) for p in params["probabilities"]]
        self.quantiles = [float(q) for q in params["score_quantiles"]]

    def score_quantile(self, probability: float) -> float:
        """Return Q(p), linear between the grid's probabilities."""
        grid, values = self.probabilities, self.quantiles
        if probability <= grid[0]:
            return values[0]
        i = bisect_left(grid, probability)  # the first grid point at or above it
        if i == len(grid):
            return values[-1]
        share = (probability - grid[i - 1]) / (grid[i] - grid[i - 1])
        return values[i - 1] + share * (values[i] - values[i - 1])

    def sigma(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Return each order's spread about its line: noise and the line's own uncertainty."""
        u = (x - self.x_centre) / self.x_scale
        line_var = np.maximum(self.c0[idx] + u * (2.0 * self.c1[idx] + u * self.c2[idx]), 0.0)
        noise = np.maximum(self.scale[0] + self.scale[1] * x, self.scale[2]) * self.ratio[idx]
        sigma: np.ndarray = np.sqrt(noise * noise + line_var)
        return sigma

    def hours(self, idx: np.ndarray, line: np.ndarray, x: np.ndarray, probability: float
              ) -> np.ndarray:
        """Return each order's promise: never below zero, equal to `hours_one` for each."""
        q = self.score_quantile(probability)
        promise = line + self.sigma(np.asarray(idx, dtype=np.intp), x) * q
        hours: np.ndarray = np.maximum(promise, 0.0) + 0.0
        return hours

    def hours_one(self, i: int, line: float, x: float, probability: float) -> float:
        """Return one order's promise, with the same floating-point steps as `hours`."""
        u = (x - self.x_centre) / self.x_scale
        # Python floats from the arrays (no list of a million floats held): the same IEEE
        # operations, in the same order, as `hours`.
        c0, c1, c2 = float(self.c0[i]), float(self.c1[i]), float(self.c2[i])
        line_var = max(c0 + u * (2.0 * c1 + u * c2), 0.0)
        noise = max(self.scale[0] + self.scale[1] * x, self.scale[2]) * float(self.ratio[i])
        sigma = math.sqrt(noise * noise + line_var)
        return max(line + sigma * self.score_quantile(probability), 0.0) + 0.0


def check_promise_params(params: Any, products: int) -> None:
    """Raise ValueError unless `params` are promise parameters for `products` products."""
    if not isinstance(params, dict) or params.get("method") != PROMISE_METHOD:
        found = params.get("method") if isinstance(params, dict) else type(params)
        raise ValueError(f"promise method is {found!r}, this code reads {PROMISE_METHOD!r}")
    cov, ratio = np.asarray(params["line_cov"]), np.asarray(params["noise_ratio"])
    if cov.dtype.kind not in "fiu" or ratio.dtype.kind not in "fiu":  # checked as they lie
        raise ValueError("promise parameters are not numbers")
    grid = np.asarray(params["probabilities"], dtype=float)
    quantiles = np.asarray(params["score_quantiles"], dtype=float)
    if cov.shape != (products, 3) or ratio.shape != (products,):
        raise ValueError(f"promise parameters are not for the model's {products} products")
    if grid.ndim != 1 or grid.shape != quantiles.shape or len(grid) < 2:
        raise ValueError("promise quantile table is malformed")
    scalars = [params[k] for k in ("x_centre", "x_scale", "scale_intercept", "scale_slope",
                                   "scale_floor")]
    if not all(np.isfinite(a).all() for a in (cov, ratio, grid, quantiles, np.array(scalars))):
        raise ValueError("promise parameters are not all finite")
    if float(params["x_scale"]) <= 0 or float(params["scale_floor"]) <= 0:
        raise ValueError("promise scales must be positive")
    if np.any(np.diff(grid) <= 0) or np.any(np.diff(quantiles) < 0):
        raise ValueError("promise quantiles must rise with the probability")


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
