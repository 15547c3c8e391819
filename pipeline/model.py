"""The regressor: one straight line per product, fitted by ordinary least squares.

The data scientist's notes (notebooks/) show hours to dispatch are linear in orders placed,
conditional on the product, with constant noise: so the best estimate is a separate line for
each product. The closed-form fit handles thousands of products in milliseconds, and the
artifact is plain numbers (no scikit-learn object), so loading it never depends on the
library versions that trained it.

Everything here is pure: DataFrames and NamedTuples in, numbers out.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np
import pandas as pd

from pipeline.tranche import HOURS, ORDERS, PRODUCT

ARTIFACT_FORMAT = "time-to-dispatch/per-product-linear/1"
MIN_ROWS_PER_PRODUCT = 3
ABSURD_FACTOR = 2.0  # an estimate above twice the longest dispatch seen is not believable


class Split(NamedTuple):
    train: pd.DataFrame
    test: pd.DataFrame


class TaskMetrics(NamedTuple):
    r2: float
    mae: float
    rows: int


class FitResult(NamedTuple):
    model: "ProductLinearModel"
    unfitted_products: List[str]  # too few rows, or no spread in orders placed


@dataclass(frozen=True)
class ProductLinearModel:
    """Hours to dispatch = intercept[product] + slope[product] * orders placed."""

    product_codes: Tuple[str, ...]
    intercepts: Tuple[float, ...]
    slopes: Tuple[float, ...]
    _index: Dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not len(self.product_codes) == len(self.intercepts) == len(self.slopes):
            raise ValueError("product_codes, intercepts and slopes differ in length")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.product_codes)})

    def knows(self, product_code: str) -> bool:
        return product_code in self._index

    def predict_one(self, product_code: str, orders_placed: float) -> float:
        """Estimate one order's hours, never below zero. KeyError for an unknown product."""
        i = self._index[product_code]
        return max(0.0, self.intercepts[i] + self.slopes[i] * orders_placed)

    def predict(self, product_codes: Sequence[str], orders_placed: np.ndarray) -> np.ndarray:
        """Estimate many orders at once, never below zero. KeyError for an unknown product."""
        idx = np.fromiter((self._index[c] for c in product_codes), dtype=np.int64)
        intercepts = np.asarray(self.intercepts)[idx]
        slopes = np.asarray(self.slopes)[idx]
        hours: np.ndarray = np.clip(intercepts + slopes * np.asarray(orders_placed, float), 0, None)
        return hours

    def to_artifact(self) -> Dict[str, Any]:
        """Return plain Python data: loadable by any numpy/scikit-learn version, or none."""
        return {
            "format": ARTIFACT_FORMAT,
            "product_codes": list(self.product_codes),
            "intercepts": [float(v) for v in self.intercepts],
            "slopes": [float(v) for v in self.slopes],
        }

    @classmethod
    def from_artifact(cls, artifact: Any) -> "ProductLinearModel":
        """Rebuild a model from `to_artifact` data; ValueError if it is not one."""
        if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
            found = artifact.get("format") if isinstance(artifact, dict) else type(artifact)
            raise ValueError(f"artifact format is {found!r}, this code reads {ARTIFACT_FORMAT!r}")
        return cls(
            tuple(str(c) for c in artifact["product_codes"]),
            tuple(float(v) for v in artifact["intercepts"]),
            tuple(float(v) for v in artifact["slopes"]),
        )


def split_by_product(data: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out about `test_fraction` of each product's rows, so every product is both fitted
    and tested (a product with fewer than 1/test_fraction rows is only fitted)."""
    every = max(2, round(1 / test_fraction))
    shuffled = data.sample(frac=1.0, random_state=seed)
    rank = shuffled.groupby(PRODUCT, sort=False).cumcount()
    is_test = (rank % every == every - 1).to_numpy()
    return Split(
        shuffled[~is_test].reset_index(drop=True), shuffled[is_test].reset_index(drop=True)
    )


def fit_per_product(train: pd.DataFrame) -> FitResult:
    """Fit an OLS line per product from grouped sums, all products at once."""
    codes, products = pd.factorize(train[PRODUCT], sort=True)
    x = train[ORDERS].to_numpy(dtype=float)
    y = train[HOURS].to_numpy(dtype=float)
    k = len(products)
    n = np.bincount(codes, minlength=k).astype(float)
    mean_x = np.bincount(codes, x, k) / n
    mean_y = np.bincount(codes, y, k) / n
    dx = x - mean_x[codes]
    sxx = np.bincount(codes, dx * dx, k)
    sxy = np.bincount(codes, dx * (y - mean_y[codes]), k)
    fittable = (n >= MIN_ROWS_PER_PRODUCT) & (sxx > 1e-9)
    slopes = np.divide(sxy, sxx, out=np.zeros(k), where=fittable)
    intercepts = mean_y - slopes * mean_x
    names = np.asarray(products, dtype=str)
    model = ProductLinearModel(
        tuple(names[fittable].tolist()),
        tuple(intercepts[fittable].tolist()),
        tuple(slopes[fittable].tolist()),
    )
    return FitResult(model, names[~fittable].tolist())


def evaluate(model: ProductLinearModel, test: pd.DataFrame) -> TaskMetrics:
    """Return R² and MAE on the held-out rows of the products the model knows."""
    known = test[test[PRODUCT].map(model.knows).astype(bool)]
    if known.empty:
        raise ValueError("no held-out rows for any fitted product: the tranche is too small")
    actual = known[HOURS].to_numpy(dtype=float)
    predicted = model.predict(known[PRODUCT].tolist(), known[ORDERS].to_numpy())
    residual = actual - predicted
    total = float(((actual - actual.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 0.0
    return TaskMetrics(r2=r2, mae=float(np.abs(residual).mean()), rows=len(known))


def check_model_logic(model: ProductLinearModel, data: pd.DataFrame) -> List[str]:
    """Return what is wrong with the model's behaviour over the tranche's range (empty: ok).

    Estimates must rise with orders placed for every product, never be negative, and never
    be absurdly above the longest dispatch in the data.
    """
    codes = np.asarray(model.product_codes)
    slopes = np.asarray(model.slopes)
    low = min(0.0, float(data[ORDERS].min()))
    high = float(data[ORDERS].max())
    at_low = np.asarray(model.intercepts) + slopes * low
    at_high = np.asarray(model.intercepts) + slopes * high
    ceiling = ABSURD_FACTOR * float(data[HOURS].max())
    problems = []
    for mask, what in (
        (slopes <= 0, "estimates do not rise with orders placed"),
        ((at_low < 0) | (at_high < 0), f"estimates are negative between {low:g} and {high:g}"),
        (at_high > ceiling, f"estimates exceed {ceiling:.1f} hours ({ABSURD_FACTOR:g}x the max)"),
    ):
        if mask.any():
            problems.append(f"{what} for {int(mask.sum())} product(s): {_some(codes[mask])}")
    return problems


def _some(codes: np.ndarray, most: int = 5) -> str:
    shown = ", ".join(codes[:most].tolist())
    return shown + (f" and {len(codes) - most} more" if len(codes) > most else "")
