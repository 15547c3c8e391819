"""Data drift: a compact profile of the training data, and how a new tranche departs from it.

Each model's metadata keeps a profile of the tranche it learned from: rows, products, the
deciles of orders and hours with the share of rows between them, and the same for its most
ordered products. A new tranche is binned on the live model's deciles and compared with the
Population Stability Index (the symmetrised Kullback-Leibler divergence, from scipy): under
0.1 is noise, 0.1 to 0.25 a moderate shift, over 0.25 a shift worth a look.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy.stats import entropy

from pipeline.codes.numbering import distinct_codes
from pipeline.codes.product_codes import ProductCodes
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT

PSI_THRESHOLD = 0.25
TOP_PRODUCTS = 20  # products profiled one by one: the most ordered
MIN_ROWS_PER_PRODUCT = 500  # fewer rows make a product's PSI mostly sampling noise
SAMPLE_ROWS = 250_000  # shares are estimated from at most this many rows: plenty for a PSI
_DECILES = np.linspace(0.0, 1.0, 11)
_FLOOR = 1e-4  # share given to an empty bin, so the PSI stays finite


def _shares(edges: np.ndarray, values: pd.Series) -> np.ndarray:
    """Return the share of values in each bin between the edges (and beyond both ends)."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    shares: np.ndarray = counts / max(len(values), 1)
    return shares


def _histogram(values: pd.Series) -> Dict[str, List[float]]:
    quantiles = np.quantile(values.to_numpy(dtype=float), _DECILES)
    edges = np.unique(quantiles[1:-1])
    return {
        "quantiles": [round(float(q), 4) for q in quantiles],
        "edges": [float(e) for e in edges],
        "shares": [round(float(c), 6) for c in _shares(edges, values)],
    }


def _sample(data: pd.DataFrame) -> pd.DataFrame:
    """Return at most SAMPLE_ROWS evenly spaced rows: bounds the cost at 10M rows.

    A systematic sample estimates a distribution's shares as well as a random one, even of
    a file sorted by a column, and costs nothing to draw.
    """
    step = -(-len(data) // SAMPLE_ROWS)
    return data if step <= 1 else data.iloc[::step]


def _top_products(data: pd.DataFrame, most: int) -> Tuple[pd.Series, int]:
    """Return the `most` products with the most rows (their counts, most first; ties in code
    order) and how many products have rows, counting the rows with one bincount."""
    every, codes = _counts(data)
    top = np.argsort(-every, kind="stable")[:most]
    top = top[every[top] > 0]
    return (pd.Series(every[top], index=codes.take(top).tolist(), name="count"),
            int(np.count_nonzero(every)))


def _counts(data: pd.DataFrame) -> Tuple[np.ndarray, ProductCodes]:
    """Return the rows of each distinct code, and the codes."""
    numbers, codes = distinct_codes(data[PRODUCT])
    counts: np.ndarray = np.bincount(numbers[numbers >= 0], minlength=len(codes))
    return counts, codes


def _rows_of(data: pd.DataFrame, codes: List[str]) -> Dict[str, int]:
    """Return the row count of each of a few codes (0: none)."""
    every, distinct = _counts(data)
    counts = np.append(every, 0)
    return {code: int(counts[n]) for code, n in zip(codes, distinct.find_many(codes))}


def _rows_among(data: pd.DataFrame, codes: Sequence[str]) -> pd.DataFrame:
    """Return the rows of these few products, their codes as text (a groupby of a few
    thousand rows held as categories would go over the tranche's million categories)."""
    numbers, distinct = distinct_codes(data[PRODUCT])
    found = distinct.find_many(list(codes))
    rows = data[np.isin(numbers, found[found >= 0])]
    return rows.assign(**{PRODUCT: np.asarray(rows[PRODUCT], dtype=object)})


def profile(data: pd.DataFrame) -> Dict[str, Any]:
    """Return the compact profile of a training tranche kept in the model's metadata."""
    top, products = _top_products(data, TOP_PRODUCTS)
    sample = _sample(data)
    top_rows = _rows_among(sample, list(top.index))
    groups = top_rows.groupby(PRODUCT, sort=False, observed=True)
    return {
        "rows": int(len(data)),
        "products": products,
        ORDERS: _histogram(sample[ORDERS]),
        HOURS: _histogram(sample[HOURS]),
        "top_products": {
            str(code): {
                "rows": int(top[code]),
                ORDERS: _histogram(rows[ORDERS]),
                HOURS: _histogram(rows[HOURS]),
            }
            for code, rows in groups
        },
    }


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Return the Population Stability Index of two distributions over the same bins."""
    p = np.clip(np.asarray(actual, float), _FLOOR, None)
    q = np.clip(np.asarray(expected, float), _FLOOR, None)
    p, q = p / p.sum(), q / q.sum()
    return float(entropy(p, q) + entropy(q, p))


def _shift(live: Dict[str, Any], values: pd.Series) -> Dict[str, Any]:
    actual = _shares(np.asarray(live["edges"], dtype=float), values)
    return {
        "psi": round(psi(live["shares"], list(actual)), 4),
        "median_before": live["quantiles"][5],
        "median_after": round(float(values.median()), 4),
    }


def compare(live: Optional[Dict[str, Any]], data: pd.DataFrame) -> List[Dict[str, Any]]:
    """Return one entry per statistic compared (column, product or all, PSI, medians)."""
    if not live:
        return []
    shifts: List[Dict[str, Any]] = []
    top = live.get("top_products", {})
    counts = _rows_of(data, list(top))
    rows = len(data)
    data = _sample(data)
    for column in (ORDERS, HOURS):
        shifts.append({"statistic": column, "product": None, **_shift(live[column], data[column])})
    before = np.array([top[c]["rows"] / live["rows"] for c in top] + [0.0])
    before[-1] = max(1.0 - before[:-1].sum(), 0.0)
    after = np.array([counts[c] / rows for c in top] + [0.0])
    after[-1] = max(1.0 - after[:-1].sum(), 0.0)
    changes = sorted(top, key=lambda c: -abs(counts[c] / rows - top[c]["rows"] / live["rows"]))
    shifts.append(
        {
            "statistic": "rows_per_product",
            "product": None,
            "psi": round(psi(list(before), list(after)), 4),
            "most_changed": {c: [top[c]["rows"], counts[c]] for c in changes[:3]},
        }
    )
    groups = _rows_among(data, list(top)).groupby(PRODUCT, sort=True, observed=True)
    for code, group in groups:
        if len(group) < MIN_ROWS_PER_PRODUCT or top[code]["rows"] < MIN_ROWS_PER_PRODUCT:
            continue
        for column in (ORDERS, HOURS):
            shifts.append(
                {"statistic": column, "product": str(code),
                 **_shift(top[code][column], group[column])}
            )
    return shifts


def describe_drift(shifts: List[Dict[str, Any]], threshold: float = PSI_THRESHOLD) -> List[str]:
    """Return a warning per statistic that shifted beyond the threshold, products grouped."""
    warnings = []
    by_product: Dict[str, List[str]] = {}
    for shift in shifts:
        if shift["psi"] < threshold:
            continue
        if shift["statistic"] == "rows_per_product":
            changed = ", ".join(
                f"{code} {before}→{after} rows" for code, (before, after) in
                shift["most_changed"].items()
            )
            warnings.append(
                f"drift in the tranche: the mix of products changed ({changed}; PSI "
                f"{shift['psi']:.2f} ≥ {threshold:g} against the live model's training data)"
            )
            continue
        change = (
            f"median {shift['median_before']:g} → {shift['median_after']:g}, "
            f"PSI {shift['psi']:.2f}"
        )
        if shift["product"] is None:
            warnings.append(
                f"drift in the tranche: {shift['statistic']} shifted: {change} ≥ {threshold:g} "
                "against the live model's training data"
            )
        else:
            by_product.setdefault(shift["statistic"], []).append(
                f"{shift['product']} ({change})"
            )
    for statistic, products in by_product.items():
        shown = "; ".join(products[:5]) + (f"; and {len(products) - 5} more"
                                           if len(products) > 5 else "")
        warnings.append(
            f"drift in {statistic} of {len(products)} product(s), PSI ≥ {threshold:g}: {shown}"
        )
    return warnings
