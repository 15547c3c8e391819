"""Promises: the hours by which a given share of such orders are dispatched, as served.

An estimate is the mean; a customer told "within X hours" needs X to hold for the share of
orders the platform asks for (0.9: nine in ten). Training learns the promise's shape
(modelling/promise_fit.py: split conformal prediction on residuals normalised by a scale that
may grow with the queue and by the pooled line's own uncertainty); the artifact carries it as
one dict of plain numpy arrays and floats (PromiseParams' fields), and this module serves it
with numpy alone (the service imports neither pandas, scikit-learn nor scipy):

    promise = max(0, line + sigma(x) * Q(p)),
    sigma(x)^2 = (ratio[product] * max(a + b x, floor))^2 + var line[product](x),

Q being the calibrated score quantile at probability p, linear between a grid's 0.50..0.99.
"""
import math
from bisect import bisect_left
from dataclasses import dataclass, fields, replace
from typing import Any, Dict

import numpy as np

from pipeline.artifact.model import served_hours

PROMISE_METHOD = "split-conformal/normalised-residuals/1"
MIN_PROBABILITY, MAX_PROBABILITY = 0.5, 0.99
PROBABILITIES = np.round(np.arange(50) / 100 + 0.5, 2)  # 0.50, 0.51, ... 0.99
CHECKED_PROBABILITY = 0.9  # what the weekly checks, the metadata and the gauge report
_SCALARS = ("x_centre", "x_scale", "scale_intercept", "scale_slope", "scale_floor")


@dataclass(frozen=True, eq=False)
class PromiseParams:
    """A model's promise as the artifact stores it: its fields are the artifact's keys."""

    x_centre: float
    x_scale: float
    scale_intercept: float  # the noise's scale, a line in orders placed with a floor
    scale_slope: float
    scale_floor: float
    line_cov: np.ndarray  # (products, 3): each line's covariance, in standardised orders
    noise_ratio: np.ndarray  # (products,): each product's noise over the catalogue's
    probabilities: np.ndarray
    score_quantiles: np.ndarray
    calibration_rows: int = 0
    method: str = PROMISE_METHOD

    def to_artifact(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_artifact(cls, params: Any, products: int) -> "PromiseParams":
        """Read an artifact's promise; ValueError unless it is one for `products` products."""
        check_promise_params(params, products)
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    def calibrated(self, score_quantiles: np.ndarray, rows: int) -> "PromiseParams":
        return replace(self, score_quantiles=score_quantiles, calibration_rows=rows)


class Promises:
    """A promise ready to serve: its per-product terms widened to doubles, once."""

    def __init__(self, params: PromiseParams) -> None:
        self.x_centre = float(params.x_centre)
        self.x_scale = float(params.x_scale)
        self.scale = (float(params.scale_intercept), float(params.scale_slope),
                      float(params.scale_floor))
        cov = np.asarray(params.line_cov)  # single floats: widened a column at a time
        self.c0, self.c1, self.c2 = (np.ascontiguousarray(cov[:, j], dtype=float)
                                     for j in range(3))
        self.ratio = np.asarray(params.noise_ratio, dtype=float)
        self.probabilities = [float(p) for p in params.probabilities]
        self.quantiles = [float(q) for q in params.score_quantiles]

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

    def sigma(self, at: Any, orders: Any) -> Any:
        """Return each order's spread about its line: noise and the line's own uncertainty
        (`at` one position or many, `orders` one queue or many)."""
        u = (orders - self.x_centre) / self.x_scale
        line_var = _at_least(self.c0[at] + u * (2.0 * self.c1[at] + u * self.c2[at]), 0.0)
        noise = _at_least(self.scale[0] + self.scale[1] * orders, self.scale[2]) * self.ratio[at]
        spread = noise * noise + line_var
        return np.sqrt(spread) if isinstance(spread, np.ndarray) else math.sqrt(spread)

    def hours(self, at: Any, line: Any, orders: Any, probability: float) -> Any:
        """Return the promise of the orders of the products at `at`, whose lines give `line`
        hours: the same floating-point steps for one order and for many."""
        return promise_hours(line, self.sigma(at, orders), self.score_quantile(probability))


def _at_least(values: Any, floor: float) -> Any:
    """max(values, floor), elementwise: numpy's for arrays, Python's for one number (the
    same IEEE result; a ufunc call on one number costs more than the rest of a promise)."""
    return np.maximum(values, floor) if isinstance(values, np.ndarray) else max(values, floor)


def promise_hours(line: Any, sigma: Any, quantile: float) -> Any:
    """Return promises from lines, spreads and a score quantile, never below zero."""
    return served_hours(line + sigma * quantile)


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
    scalars = np.array([params[k] for k in _SCALARS], dtype=float)
    if not all(np.isfinite(a).all() for a in (cov, ratio, grid, quantiles, scalars)):
        raise ValueError("promise parameters are not all finite")
    if float(params["x_scale"]) <= 0 or float(params["scale_floor"]) <= 0:
        raise ValueError("promise scales must be positive")
    if np.any(np.diff(grid) <= 0) or np.any(np.diff(quantiles) < 0):
        raise ValueError("promise quantiles must rise with the probability")
