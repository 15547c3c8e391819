"""Do promises hold? Coverage and pinball loss against the generator's true quantiles.

Run: python benchmarks/promise.py [--seeds 1] [--quick]
As train_model does, each tranche's rows are split per product (a fifth held out), the pooled
lines fitted on the rest, and the promise calibrated on the held-out rows. Coverage
(the share of orders dispatched within their promise) is measured on rows that neither
trained nor calibrated it: the next week of the same catalogue (another seed), 50,000 rows,
overall and per quintile of orders placed; the pinball loss of the promise is printed over
that of the generator's true quantile on the same rows (1.000 is the truth). Beside each, the
promise a normal error with one sd would give (line + z * noise sd), for contrast.
Then the long-tailed catalogue, by training rows per product, beside one residual quantile
added to the pooled lines; then 50 seeds of real-shaped 1,000-row tranches (coverage on the
held-out rows, each half counted under the promise the other half calibrated, as
train_model reports it, and how many were warned).
"""
import argparse
import statistics
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pandas as pd
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.modelling.estimator import PooledLinearRegressor  # noqa: E402
from pipeline.modelling.evaluation import split_by_product  # noqa: E402
from pipeline.generate_dataset import generate_tranche, true_quantile  # noqa: E402
from pipeline.artifact.promise import Promises  # noqa: E402
from pipeline.modelling.promise_check import coverage_warning, held_out_coverage  # noqa: E402
from pipeline.modelling.promise_fit import (  # noqa: E402
    fit_promise,
    promise_shape,
)
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT  # noqa: E402

LEVELS = (0.5, 0.9, 0.95)
BUCKETS = ((1, 2, "<3"), (3, 9, "3-9"), (10, 49, "10-49"), (50, 10**9, "50+"))


def pinball(hours: np.ndarray, promise: np.ndarray, p: float) -> float:
    """Mean pinball (quantile) loss of `promise` as the p-quantile of `hours`."""
    diff = hours - promise
    return float(np.mean(np.maximum(p * diff, (p - 1) * diff)))


def fitted(rows: int, skus: int, seed: int, noise: str, zipf: float = 0.0
           ) -> Tuple[PooledLinearRegressor, Promises, List[str], pd.DataFrame, pd.DataFrame]:
    """Fit lines and promise as train_model does; return them, the codes and the check rows."""
    tranche = generate_tranche(rows, skus, seed, zipf or None, noise=noise)
    split = split_by_product(tranche.data)
    model = PooledLinearRegressor().fit(split.train[[PRODUCT, ORDERS]], split.train[HOURS])
    codes = model.product_codes_.tolist()
    params = fit_promise(model, codes, split.train, split.test)
    return model, Promises(params), codes, split.train, split.test


def promised(model: PooledLinearRegressor, promises: Promises, rows: pd.DataFrame, p: float
             ) -> np.ndarray:
    idx = model.product_index(rows[PRODUCT])
    x = rows[ORDERS].to_numpy(dtype=float)
    hours: np.ndarray = promises.hours(idx, model.predict_line(rows), x, p)
    return hours


def shapes(seed: int, check_rows: int) -> None:
    print("Three noise shapes, 50,000 rows over 50 products; checked on the next week "
          f"({check_rows:,} rows)")
    print(f"{'noise':8} {'p':>5} {'coverage':>9} {'worst quintile':>15} {'pinball/true':>13} "
          f"{'normal-1sd cov':>15} {'its worst q.':>12} {'its pinball':>12}")
    for noise in ("normal", "skewed", "growing"):
        model, promises, _, _, _ = fitted(50_000, 50, seed, noise)
        week = generate_tranche(check_rows, 50, seed + 1000, noise=noise)
        rows = week.data
        hours = rows[HOURS].to_numpy(dtype=float)
        quintile = pd.qcut(rows[ORDERS].rank(method="first"), 5, labels=False).to_numpy()
        line = model.predict_line(rows)
        for p in LEVELS:
            ours = promised(model, promises, rows, p)
            naive = np.clip(line + norm.ppf(p) * model.noise_sd_, 0, None)
            best = true_quantile(week.products, rows, p, noise)
            out = []
            for promise in (ours, naive):
                within = hours <= promise
                worst = max(abs(within[quintile == q].mean() - p) for q in range(5))
                out.append((within.mean(), worst, pinball(hours, promise, p)
                            / pinball(hours, best, p)))
            (c, w, r), (nc, nw, nr) = out
            print(f"{noise:8} {p:5.2f} {c:9.1%} {w * 100:+14.1f}pt {r:13.3f} "
                  f"{nc:15.1%} {nw * 100:+11.1f}pt {nr:12.3f}")


def long_tail(seed: int) -> None:
    print("\nLong-tailed catalogue: 100,000 rows over 5,000 products (Zipf 1.1), p = 0.9; "
          "checked on the next week's orders of products the model knows")
    model, promises, codes, train, _ = fitted(100_000, 5000, seed, "normal", zipf=1.1)
    week = generate_tranche(100_000, 5000, seed + 1000, 1.1).data
    idx = model.product_index(week[PRODUCT])
    rows = week[idx >= 0].reset_index(drop=True)
    idx = idx[idx >= 0]
    hours = rows[HOURS].to_numpy(dtype=float)
    ours = promised(model, promises, rows, 0.9)
    # One residual quantile added to the pooled lines, from the same calibration rows' kind:
    # the training residuals' 0.9 quantile.
    residual = train[HOURS].to_numpy() - model.predict_line(train)
    naive = np.clip(model.predict_line(rows) + np.quantile(residual, 0.9), 0, None)
    trained = model.rows_[idx]
    print(f"{'training rows':>13} {'orders':>8} {'coverage':>9} {'one-quantile':>13}")
    for low, high, label in BUCKETS:
        sel = (trained >= low) & (trained <= high)
        print(f"{label:>13} {int(sel.sum()):8d} {(hours <= ours)[sel].mean():9.1%} "
              f"{(hours <= naive)[sel].mean():13.1%}")


def real_shaped(seeds: int) -> None:
    print(f"\nReal-shaped tranches: 1,000 rows over 5 products, {seeds} seeds, p = 0.9, "
          "coverage on held-out rows that did not calibrate (two folds)")
    found: List[float] = []
    warned = 0
    for seed in range(seeds):
        model, _, codes, train, test = fitted(1000, 5, seed, "normal")
        (held_out,) = held_out_coverage(promise_shape(model, codes, train), model, codes, test)
        found.append(held_out.coverage)
        warned += coverage_warning(held_out) is not None
    print(f"mean coverage {statistics.mean(found):.1%} (median {statistics.median(found):.1%}, "
          f"{min(found):.1%} to {max(found):.1%}; {held_out.rows} rows a seed); "
          f"{warned} of {seeds} warned, none refused (promises only warn)")


def main(seeds: int, quick: bool) -> None:
    for seed in range(seeds):
        shapes(seed, 10_000 if quick else 50_000)
        long_tail(seed)
    real_shaped(10 if quick else 50)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="catalogue seeds (first tables)")
    parser.add_argument("--quick", action="store_true", help="fewer check rows and seeds")
    args = parser.parse_args()
    main(args.seeds, args.quick)
