"""Judge a model before it is published: held-out metrics, logic checks, the live model.

Everything here is pure: models and DataFrames in, numbers and messages out.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import mean_absolute_error, r2_score

from pipeline.artifact.model import ProductLinearModel
from pipeline.codes.numbering import factorize_products, row_positions
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT

ABSURD_FACTOR = 2.0  # an estimate above twice the longest dispatch seen is not believable
FALSE_ALARM_RATE = 0.01  # chance, over the whole catalogue, that noise alone fails a check
MAX_MAE_REGRESSION = 0.05  # the new model may be this much worse than the live one, no more
_SPLIT_STREAM = 0x5EED  # keeps the split's draws apart from a generator seeded alike


class Split(NamedTuple):
    train: pd.DataFrame
    test: pd.DataFrame


def _stable_order(codes: np.ndarray, products: int) -> np.ndarray:
    """Sort rows by product, each product's rows in file order.

    numpy's stable sort of 16-bit numbers is a radix sort; a catalogue of more products is
    sorted by the low 16 bits, then by the high ones (a radix sort, two passes).
    """
    order: np.ndarray = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    if products > 2**16:
        order = order[np.argsort((codes[order] >> 16).astype(np.uint16), kind="stable")]
    return order


@dataclass(frozen=True)
class Comparison:
    """The live model and the new one scored on the same held-out rows of this week (those
    both answer), and how often each one's promise held there (None: it has none)."""

    live_version: str
    rows: int = 0
    live_mae: Optional[float] = None
    live_r2: Optional[float] = None
    new_mae: Optional[float] = None
    new_r2: Optional[float] = None
    live_promise_coverage: Optional[float] = None
    new_promise_coverage: Optional[float] = None

    def section(self) -> Dict[str, Any]:
        """Return the metadata's `comparison` (only the version and no rows when none)."""
        return asdict(self) if self.rows else {"live_version": self.live_version, "rows": 0}


class TaskMetrics(NamedTuple):
    r2: float
    mae: float
    rows: int


def split_by_product(data: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out every `1/test_fraction`-th row of each product, from a random first one.

    Each product with n rows has exactly floor(n * test_fraction) rows held out, so every
    product is fitted and each with 1/test_fraction rows or more is also tested; the rows
    are evenly spread over the product's rows in the file (a week of orders), starting at
    a random one of the first 1/test_fraction. One 16-bit sort finds each product's rows,
    so 10M rows split in about half a second; both parts keep the file's order. The phases
    come from their own random stream: a generator seeded with the same number (the tests'
    and benchmarks' are) must not choose alike.
    """
    every = max(2, round(1 / test_fraction))
    codes, products = factorize_products(data[PRODUCT])
    counts = np.bincount(codes, minlength=len(products))
    order = _stable_order(codes, len(products))
    del codes
    first = np.cumsum(counts) - counts  # where each product's rows start in `order`
    phase = np.random.default_rng([seed, _SPLIT_STREAM]).integers(0, every, len(products))
    held = counts // every  # rows each product holds out
    # The j-th held-out row of product p is its (every - 1 - phase + every * j)-th.
    j = np.arange(held.sum()) - np.repeat(np.cumsum(held) - held, held)
    places = np.repeat(first + every - 1 - phase, held) + every * j
    is_test = np.zeros(len(order), dtype=bool)
    is_test[order[places]] = True
    return Split(
        data[~is_test].reset_index(drop=True), data[is_test].reset_index(drop=True)
    )


def evaluate(model: ProductLinearModel, test: pd.DataFrame) -> TaskMetrics:
    """Return R² and MAE of the served estimates on the held-out rows of known products."""
    known = test[_positions(model, test) >= 0]
    if known.empty:
        raise ValueError("no held-out rows for any fitted product: the tranche is too small")
    actual = known[HOURS].to_numpy(dtype=float)
    predicted = served_estimates(model, known)
    r2 = float(r2_score(actual, predicted)) if len(known) > 1 else 0.0
    return TaskMetrics(r2=r2, mae=float(mean_absolute_error(actual, predicted)), rows=len(known))


def served_estimates(model: ProductLinearModel, rows: pd.DataFrame) -> np.ndarray:
    """Return what the service would answer for each row (all of known products), each
    distinct code looked up once."""
    idx = _positions(model, rows)
    if (idx < 0).any():
        raise KeyError("rows of products the model does not know")
    hours: np.ndarray = model.hours(idx, rows[ORDERS].to_numpy(dtype=float))
    return hours


def _positions(model: ProductLinearModel, rows: pd.DataFrame) -> np.ndarray:
    return row_positions(model.product_codes, rows[PRODUCT])


def check_model_logic(
    model: ProductLinearModel,
    high: float,
    longest: float,
    slope_sd: Optional[np.ndarray] = None,
) -> List[str]:
    """Return what is wrong with the estimates served up to the tranche's longest queue,
    `high` orders, whose longest dispatch took `longest` hours (empty: nothing).

    The service floors estimates at zero, so a line that dips below zero at an empty queue is
    no defect. A product fails when, beyond what the noise in its slope allows (a z-score
    corrected for the number of products), its estimates fall as orders grow, stay at zero
    across the whole range, or rise above ABSURD_FACTOR times the longest dispatch seen.
    """
    slopes = np.asarray(model.slopes, dtype=float)
    intercepts = np.asarray(model.intercepts, dtype=float)
    count = len(model.product_codes)
    sd = np.zeros(count) if slope_sd is None else np.asarray(slope_sd, dtype=float)
    z = float(norm.isf(FALSE_ALARM_RATE / max(count, 1)))
    at_high = intercepts + slopes * high
    margin = z * sd * max(high, 1.0)
    ceiling = ABSURD_FACTOR * longest
    problems = []
    for mask, what in (
        (slopes + z * sd <= 0, "estimates do not rise with orders placed"),
        (at_high + margin <= 0, f"estimates are zero for every queue up to {high:g} orders"),
        (at_high - margin > ceiling, f"estimates exceed {ceiling:.1f} hours "
                                     f"({ABSURD_FACTOR:g}x the longest dispatch)"),
    ):
        if mask.any():
            problems.append(
                f"{what} for {int(mask.sum())} product(s): {_some(model, np.flatnonzero(mask))}"
            )
    return problems


def compare_with_live(
    new: ProductLinearModel,
    live: ProductLinearModel,
    live_version: str,
    test: pd.DataFrame,
) -> Comparison:
    """Score the new and the live model on the same held-out rows (those both can answer).

    The live model's score is how last week's model does on the week that followed: the
    first sign of drift, and the bar the new model must clear.
    """
    both = test[(_positions(live, test) >= 0) & (_positions(new, test) >= 0)]
    if both.empty:
        return Comparison(live_version)
    new_metrics = evaluate(new, both)
    live_metrics = evaluate(live, both)
    return Comparison(live_version, len(both), live_metrics.mae, live_metrics.r2,
                      new_metrics.mae, new_metrics.r2)


def mae_regression(comparison: Comparison, tolerance: float) -> Optional[str]:
    """Return why the new model is worse than the live one beyond `tolerance`, or None."""
    live, new = comparison.live_mae, comparison.new_mae
    if not comparison.rows or live is None or new is None or new <= live * (1 + tolerance):
        return None
    return (
        f"the new model's held-out MAE {new:.4f} is worse than the live model "
        f"{comparison.live_version}'s {live:.4f} on the same {comparison.rows} rows, "
        f"by {new / live - 1:.1%} (tolerance {tolerance:.0%})"
    )


def _some(model: ProductLinearModel, positions: np.ndarray, most: int = 5) -> str:
    shown = ", ".join(model.product_codes.take(positions[:most]).tolist())
    return shown + (f" and {len(positions) - most} more" if len(positions) > most else "")
