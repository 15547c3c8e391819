"""How long does fitting take? Prints medians and the ratio to the one-second target.

Run: python benchmarks/bench_fit.py [--repeats 21]
Compares, side by side in one run, the closed-form per-product fit with a naive loop of
numpy.polyfit per product (what the notebook does), on the two tranche sizes the issue names.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.generate_dataset import generate_tranche  # noqa: E402
from pipeline.model import fit_per_product, split_by_product  # noqa: E402
from pipeline.tranche import HOURS, ORDERS, PRODUCT  # noqa: E402

TARGET_SECONDS = 1.0


def polyfit_loop(train: pd.DataFrame) -> None:
    for _, rows in train.groupby(PRODUCT):
        if len(rows) >= 3:
            np.polyfit(rows[ORDERS], rows[HOURS], 1)


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(repeats: int) -> None:
    print(f"{'tranche':>22} {'fit (ms)':>10} {'polyfit loop (ms)':>18} {'speed-up':>9} "
          f"{'fit / 1 s target':>17}")
    for rows, skus in ((1000, 5), (100_000, 2000)):
        train = split_by_product(generate_tranche(rows, skus, seed=1).data).train
        fit = median_seconds(lambda: fit_per_product(train), repeats)
        loop = median_seconds(lambda: polyfit_loop(train), max(3, repeats // 5))
        print(f"{f'{rows} rows, {skus} SKUs':>22} {fit * 1e3:>10.2f} {loop * 1e3:>18.1f} "
              f"{loop / fit:>8.1f}x {fit / TARGET_SECONDS:>17.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    main(parser.parse_args().repeats)
