"""Generate a synthetic weekly tranche that behaves like the real ones.

Steps:
1. Draw each product's own dispatch parameters: base hours and hours per queued order.
2. Draw rows: a product, the orders already placed that day, and the hours to dispatch,
   linear in orders for each product, with homoscedastic noise, never negative.
3. Write the CSV into the store under a key that carries the tranche's date.

The generator knows its true function (`true_hours`), so tests can compare a trained model
with the best possible one on the same rows.
"""
import argparse
import io
from datetime import datetime, timezone
from typing import List, NamedTuple, Optional

import numpy as np
import pandas as pd

from pipeline.cli import add_store_argument, exit_on_failure
from pipeline.logs import configure_logger
from pipeline.settings import Settings
from pipeline.store import Store, open_store
from pipeline.tranche import (
    DATASETS_PREFIX,
    HOURS,
    ORDERS,
    PRODUCT,
    dated_tranche_keys,
    tranche_key,
)

log = configure_logger(__name__)

NOISE_SD = 0.75
MAX_ORDERS = 200


class SyntheticTranche(NamedTuple):
    data: pd.DataFrame
    products: pd.DataFrame  # product_code, base_hours, hours_per_order
    noise_sd: float


def product_codes(skus: int) -> List[str]:
    """Return SKU codes padded to a width that sorts them in order: SKU001 or SKU0001."""
    width = max(3, len(str(skus)))
    return [f"SKU{i:0{width}d}" for i in range(1, skus + 1)]


def generate_tranche(rows: int, skus: int, seed: int = 42) -> SyntheticTranche:
    """Draw a tranche of `rows` orders over `skus` products."""
    if rows < 1 or skus < 1:
        raise ValueError("rows and skus must be at least 1")
    rng = np.random.default_rng(seed)
    products = pd.DataFrame(
        {
            PRODUCT: product_codes(skus),
            "base_hours": rng.uniform(2.0, 6.0, skus),
            "hours_per_order": rng.uniform(0.01, 0.05, skus),
        }
    )
    which = rng.integers(0, skus, rows)
    orders = rng.integers(0, MAX_ORDERS + 1, rows)
    mean = products["base_hours"].to_numpy()[which] + products["hours_per_order"].to_numpy()[
        which
    ] * orders
    hours = np.clip(mean + rng.normal(0.0, NOISE_SD, rows), 0.0, None).round(4)
    data = pd.DataFrame(
        {HOURS: hours, ORDERS: orders, PRODUCT: products[PRODUCT].to_numpy()[which]}
    )
    return SyntheticTranche(data, products, NOISE_SD)


def true_hours(products: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    """Return the expected hours of each row under the generator's own parameters."""
    params = products.set_index(PRODUCT).loc[data[PRODUCT]]
    base = params["base_hours"].to_numpy(dtype=float)
    rate = params["hours_per_order"].to_numpy(dtype=float)
    hours: np.ndarray = base + rate * data[ORDERS].to_numpy(dtype=float)
    return hours


def to_csv_bytes(data: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    data.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def main(
    store: Store,
    rows: int = 1000,
    skus: int = 5,
    when: Optional[datetime] = None,
    seed: int = 42,
    if_empty: bool = False,
) -> Optional[str]:
    """Write a synthetic tranche into the store; return its key (None if skipped)."""
    if if_empty:
        existing = dated_tranche_keys(store.list_keys(DATASETS_PREFIX))
        if existing:
            log.info(f"{store.uri} already holds {len(existing)} tranche(s); generating none")
            return None
    when = when or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    key = tranche_key(when)
    tranche = generate_tranche(rows, skus, seed)
    store.put_new(key, to_csv_bytes(tranche.data))
    log.info(f"wrote {rows} rows over {skus} products to {store.location(key)}")
    return key


def _parse_when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from exc


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    settings = Settings()
    add_store_argument(parser, settings)
    parser.add_argument("--rows", type=_positive, default=1000)
    parser.add_argument("--skus", type=_positive, default=5)
    parser.add_argument("--date", type=_parse_when, default=None, help="tranche date (ISO)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--if-empty", action="store_true", help="do nothing if the store holds a tranche"
    )
    args = parser.parse_args()
    with exit_on_failure(log, settings):
        main(open_store(args.store), args.rows, args.skus, args.date, args.seed, args.if_empty)
