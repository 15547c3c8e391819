"""How close to the truth are the served estimates? Pooled lines beside lines fitted alone.

Run: python benchmarks/accuracy.py [--seeds 3] [--quick]
For each catalogue the issue names, generates real-shaped tranches, holds out a fifth of each
product's rows as train_model does, fits (a) the pooled lines train_model publishes and (b)
one least-squares line per product with no pooling (the catalogue line where a product has
too few rows), and prints, per seed and as a median, each one's held-out MAE over the MAE of
the generator's true function (floored at zero, the best any model could serve) on the
same rows, beside the target and the fit time. Lower is better; 1.000 is the truth.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.modelling.estimator import PooledLinearRegressor  # noqa: E402
from pipeline.modelling.evaluation import split_by_product  # noqa: E402
from pipeline.generate_dataset import best_estimate, generate_tranche  # noqa: E402
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT  # noqa: E402


class Case(NamedTuple):
    rows: int
    skus: int
    zipf: Optional[float]
    target: float


CASES = [
    Case(1_000, 5, None, 1.03),
    Case(100_000, 5_000, 1.1, 1.08),
    Case(1_000_000, 10_000, 1.1, 1.02),
]


def ratios(case: Case, seed: int) -> Tuple[float, float, float]:
    """Return (pooled ratio, alone ratio, pooled fit seconds) for one tranche."""
    tranche = generate_tranche(case.rows, case.skus, seed, case.zipf)
    split = split_by_product(tranche.data)
    X, y = split.train[[PRODUCT, ORDERS]], split.train[HOURS]
    actual = split.test[HOURS].to_numpy()
    best = float(np.abs(actual - best_estimate(tranche.products, split.test)).mean())
    out: List[float] = []
    seconds = 0.0
    for scale in (1.0, float("inf")):
        started = time.perf_counter()
        model = PooledLinearRegressor(prior_scale=scale).fit(X, y)
        if scale == 1.0:
            seconds = time.perf_counter() - started
        out.append(float(np.abs(actual - model.predict(split.test)).mean()) / best)
    return out[0], out[1], seconds


def main(seeds: int, quick: bool) -> None:
    print(f"{'rows':>10} {'products':>9} {'popularity':>10} {'seed':>5} "
          f"{'pooled':>8} {'alone':>8} {'target':>7} {'fit s':>7}")
    for case in CASES[:2] if quick else CASES:
        pooled, alone = [], []
        shape = f"Zipf({case.zipf:g})" if case.zipf else "even"
        for seed in range(1, seeds + 1):
            p, a, seconds = ratios(case, seed)
            pooled.append(p)
            alone.append(a)
            print(f"{case.rows:>10,} {case.skus:>9,} {shape:>10} {seed:>5} "
                  f"{p:>8.4f} {a:>8.4f} {case.target:>7.2f} {seconds:>7.2f}")
        p_med, a_med = statistics.median(pooled), statistics.median(alone)
        verdict = "met" if max(pooled) <= case.target else "MISSED"
        print(f"{'':>10} {'':>9} {'':>10} {'med':>5} {p_med:>8.4f} {a_med:>8.4f} "
              f"{case.target:>7.2f}   target {verdict} (worst pooled {max(pooled):.4f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 1M-row catalogue")
    args = parser.parse_args()
    main(args.seeds, args.quick)
