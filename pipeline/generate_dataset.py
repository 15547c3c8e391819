"""Generate a synthetic weekly tranche shaped like the real ones, quirks included on request.

Steps:
1. Draw each product's dispatch line: base hours near zero, 0.07 to 0.18 hours per queued order.
2. Draw rows: a product (evenly, or with Zipf popularity for a long-tailed catalogue), the
   orders already placed that day (skewed, 0 to 320), and the hours to dispatch: the line plus
   noise, floored at zero. The noise is normal with an sd of an hour at every queue length
   (as measured), or on request right-skewed (some orders wait for stock) or growing with the
   queue, the shapes other weeks and plants show.
3. Inject the quirks real drops carry, when asked: padded product codes, a 9,999-hour slip,
   CRLF line endings, a semicolon-delimited file, a compact date in the key, an undated export.
4. Write the CSV into the store under a key that carries the tranche's date; with `--weeks`,
   a tranche a week for weeks in a row, of the same catalogue, whose lines change partway
   when asked (`--world`): every rate up by a quarter (a warehouse-wide slowdown), or a
   tenth of the products' rates up by 60%.

The shape is the one measured on a real tranche (issue "Work on real tranches"). The generator
knows its true function, so tests can compare a trained model with the best possible one on
the same rows (`best_estimate`), and a promise with the true quantiles (`true_quantile`).
"""
import argparse
import io
from datetime import datetime, timedelta, timezone
from typing import FrozenSet, Iterable, List, NamedTuple, Optional

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.cli import (
    add_store_argument,
    build_parser,
    exit_on_failure,
    number_in,
    stage_settings,
)
from pipeline.logs import configure_logger
from pipeline.registry.store import Store, open_store
from pipeline.data.tranche import (
    DATASETS_PREFIX,
    HOURS,
    ORDERS,
    PRODUCT,
    dated_tranche_keys,
    tranche_key,
)

log = configure_logger(__name__)

NOISE_SD = 1.0  # hours, the same at every queue length
BASE_HOURS = (0.0, 0.2)  # a line often crosses zero slightly once fitted
HOURS_PER_ORDER = (0.07, 0.18)
MAX_ORDERS = 320
ORDERS_SHAPE, ORDERS_SCALE = 1.2, 61.0  # gamma: median about 55, mean about 73, ~3% zero hours
OUTLIER_HOURS = 9999.0  # the data-entry slip seen in a real drop
# Noise shapes, each of mean zero. "skewed": a gamma of shape 2, sd NOISE_SD, shifted to mean
# zero (skewness 1.4: a long right tail of orders waiting for stock). "growing": normal with
# an sd of GROWING_SD[0] + GROWING_SD[1] * orders (0.5 h on an empty queue, ~1.5 h at the
# median queue, ~5 h at 320 orders).
NOISES = ("normal", "skewed", "growing")
SKEW_SHAPE = 2.0
GROWING_SD = (0.5, 0.015)

# Quirks of real drops. Row quirks change the data, file quirks its bytes, key quirks its name.
ROW_QUIRKS = frozenset({"spaces", "outlier"})
FILE_QUIRKS = frozenset({"crlf", "semicolon"})
KEY_QUIRKS = frozenset({"compact-date", "undated-export"})
QUIRKS = ROW_QUIRKS | FILE_QUIRKS | KEY_QUIRKS
UNDATED_EXPORT_KEY = f"{DATASETS_PREFIX}orders_export.csv"
# How the catalogue's lines change from a week on: not at all; every rate up by a quarter;
# a tenth of the products (drawn at random) up by 60%.
WORLDS = {"none": (0.0, 1.0), "warehouse": (1.0, 1.25), "tenth": (0.1, 1.6)}
_CHANGED_STREAM = 0xC4A


class SyntheticTranche(NamedTuple):
    data: pd.DataFrame
    products: pd.DataFrame  # product_code, base_hours, hours_per_order, popularity
    noise_sd: float  # the normal noise's sd; for other shapes, their sd at the median queue
    noise: str = "normal"


def product_codes(skus: int) -> List[str]:
    """Return SKU codes padded to a width that sorts them in order: SKU001 or SKU0001."""
    width = max(3, len(str(skus)))
    return [f"SKU{i:0{width}d}" for i in range(1, skus + 1)]


def generate_tranche(
    rows: int,
    skus: int,
    seed: int = 42,
    zipf: Optional[float] = None,
    quirks: Iterable[str] = (),
    catalogue_seed: int = 0,
    queue_factor: float = 1.0,
    noise: str = "normal",
    world: str = "none",
    week: int = 0,
    change_week: int = 0,
) -> SyntheticTranche:
    """Draw a tranche of `rows` orders over `skus` products.

    Each product's line comes from `catalogue_seed`, the rows from `seed`: successive weeks
    (seeds) of one catalogue share their products' lines, as real weeks do.
    With `zipf` (e.g. 1.1), product k of the catalogue is ordered in proportion to k^-zipf:
    a few products get thousands of rows, most a handful, many one or none.
    `queue_factor` scales the queues (1.5: a busier week), for drift. `noise` is one of NOISES;
    "normal" draws exactly what it drew before the other shapes existed. In a `world` other
    than "none" (WORLDS), the lines of `week` have changed if it is `change_week` or later.
    """
    if rows < 1 or skus < 1:
        raise ValueError("rows and skus must be at least 1")
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; known: {', '.join(NOISES)}")
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; known: {', '.join(WORLDS)}")
    unknown = set(quirks) - QUIRKS
    if unknown:
        raise ValueError(f"unknown quirk(s) {sorted(unknown)}; known: {sorted(QUIRKS)}")
    products = catalogue_in_week(skus, zipf, catalogue_seed, world, week, change_week)
    rng = np.random.default_rng(seed)
    which = rng.choice(skus, size=rows, p=products["popularity"].to_numpy())
    orders = np.minimum(
        np.round(rng.gamma(ORDERS_SHAPE, ORDERS_SCALE * queue_factor, rows)),
        round(MAX_ORDERS * max(queue_factor, 1.0)),
    ).astype(np.int64)
    line = products["base_hours"].to_numpy()[which] + products["hours_per_order"].to_numpy()[
        which
    ] * orders
    hours = np.clip(line + draw_noise(rng, orders, noise), 0.0, None).round(3)
    data = pd.DataFrame(
        {HOURS: hours, ORDERS: orders, PRODUCT: products[PRODUCT].to_numpy()[which]}
    )
    data = inject_row_quirks(data, frozenset(quirks), rng)
    return SyntheticTranche(data, products, NOISE_SD, noise)


def catalogue_in_week(skus: int, zipf: Optional[float], catalogue_seed: int = 0,
                      world: str = "none", week: int = 0, change_week: int = 0) -> pd.DataFrame:
    """Return the catalogue's products and their lines in that week of that world."""
    catalogue_rng = np.random.default_rng(catalogue_seed)
    rank = np.arange(1, skus + 1, dtype=float)
    popularity = rank**-zipf if zipf else np.ones(skus)
    products = pd.DataFrame(
        {
            PRODUCT: product_codes(skus),
            "base_hours": catalogue_rng.uniform(*BASE_HOURS, skus),
            "hours_per_order": catalogue_rng.uniform(*HOURS_PER_ORDER, skus),
            "popularity": popularity / popularity.sum(),
        }
    )
    if week >= change_week and world != "none":
        share, factor = WORLDS[world]
        changed = np.random.default_rng([catalogue_seed, _CHANGED_STREAM]).random(skus) < share
        products.loc[changed, "hours_per_order"] *= factor
    return products


def draw_noise(rng: np.random.Generator, orders: np.ndarray, noise: str) -> np.ndarray:
    """Draw each row's noise (mean zero) in the shape asked for."""
    if noise == "skewed":
        theta = NOISE_SD / np.sqrt(SKEW_SHAPE)
        skewed: np.ndarray = rng.gamma(SKEW_SHAPE, theta, len(orders)) - SKEW_SHAPE * theta
        return skewed
    if noise == "growing":
        sd = GROWING_SD[0] + GROWING_SD[1] * orders.astype(float)
        growing: np.ndarray = rng.normal(0.0, 1.0, len(orders)) * sd
        return growing
    normal: np.ndarray = rng.normal(0.0, NOISE_SD, len(orders))
    return normal


def noise_quantile(probability: float, orders: np.ndarray, noise: str) -> np.ndarray:
    """Return the noise's true quantile at `probability` for each row's queue."""
    x = np.asarray(orders, dtype=float)
    if noise == "skewed":
        theta = NOISE_SD / np.sqrt(SKEW_SHAPE)
        q = float(stats.gamma.ppf(probability, SKEW_SHAPE, scale=theta)) - SKEW_SHAPE * theta
        return np.full(len(x), q)
    z = float(stats.norm.ppf(probability))
    if noise == "growing":
        growing: np.ndarray = z * (GROWING_SD[0] + GROWING_SD[1] * x)
        return growing
    return np.full(len(x), z * NOISE_SD)


def true_quantile(
    products: pd.DataFrame, data: pd.DataFrame, probability: float, noise: str = "normal"
) -> np.ndarray:
    """Return the hours by which `probability` of such orders are dispatched, per row.

    The floor at zero is monotone, so the floored hours' quantile is the latent one, floored:
    the best promise any model could make.
    """
    latent = line_hours(products, data) + noise_quantile(
        probability, data[ORDERS].to_numpy(dtype=float), noise
    )
    best: np.ndarray = np.clip(latent, 0.0, None)
    return best


def inject_row_quirks(
    data: pd.DataFrame, quirks: FrozenSet[str], rng: np.random.Generator
) -> pd.DataFrame:
    """Pad about 5% of product codes with spaces, and/or turn one row into a 9,999-hour slip."""
    data = data.copy()
    if "spaces" in quirks:
        padded = rng.random(len(data)) < 0.05
        data.loc[padded, PRODUCT] = data.loc[padded, PRODUCT] + "  "
        leading = padded & (rng.random(len(data)) < 0.2)
        data.loc[leading, PRODUCT] = " " + data.loc[leading, PRODUCT]
    if "outlier" in quirks:
        data.loc[int(rng.integers(len(data))), HOURS] = OUTLIER_HOURS
    return data


def line_hours(products: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    """Return each row's expected hours on its product's true line (before the zero floor)."""
    params = products.set_index(PRODUCT).loc[pd.Index(data[PRODUCT].str.strip())]
    base = params["base_hours"].to_numpy(dtype=float)
    rate = params["hours_per_order"].to_numpy(dtype=float)
    hours: np.ndarray = base + rate * data[ORDERS].to_numpy(dtype=float)
    return hours


def best_estimate(products: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    """Return the best estimate any model could serve for each row: the true line, floored.

    Hours are the line plus symmetric noise, floored at zero, so the floored line is their
    median: no estimate has a lower expected absolute error.
    """
    best: np.ndarray = np.clip(line_hours(products, data), 0.0, None)
    return best


def to_csv_bytes(data: pd.DataFrame, quirks: Iterable[str] = ()) -> bytes:
    """Write the CSV as the data team would, with CRLF or semicolons when asked."""
    quirks = frozenset(quirks)
    buffer = io.StringIO()
    data.to_csv(
        buffer,
        index=False,
        sep=";" if "semicolon" in quirks else ",",
        lineterminator="\r\n" if "crlf" in quirks else "\n",
    )
    return buffer.getvalue().encode("utf-8")


def compact_tranche_key(when: datetime) -> str:
    """Return a key with the compact date some drops use: time_to_dispatch_20210716.csv."""
    return f"{DATASETS_PREFIX}time_to_dispatch_{when.strftime('%Y%m%d')}.csv"


def main(
    store: Store,
    rows: int = 1000,
    skus: int = 5,
    when: Optional[datetime] = None,
    seed: int = 42,
    if_empty: bool = False,
    zipf: Optional[float] = None,
    quirks: Iterable[str] = (),
    queue_factor: float = 1.0,
    noise: str = "normal",
    weeks: int = 1,
    world: str = "none",
    change_week: int = 0,
) -> Optional[str]:
    """Write synthetic tranches into the store, the last dated `when`, a week apart; return
    the last one's key (None if skipped).

    Week w (1 to `weeks`) draws its rows with seed `seed` + w - 1, so one week is what the
    generator always drew; in a `world` that changes, lines change from `change_week` on.
    """
    quirks = frozenset(quirks)
    if if_empty:
        existing = dated_tranche_keys(store.list_keys(DATASETS_PREFIX))
        if existing:
            log.info(f"{store.uri} already holds {len(existing)} tranche(s); generating none")
            return None
    when = when or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    key = None
    for week in range(1, weeks + 1):
        dated = when - timedelta(weeks=weeks - week)
        key = compact_tranche_key(dated) if "compact-date" in quirks else tranche_key(dated)
        tranche = generate_tranche(
            rows, skus, seed + week - 1, zipf, quirks, queue_factor=queue_factor, noise=noise,
            world=world, week=week, change_week=change_week,
        )
        store.put_new(key, to_csv_bytes(tranche.data, quirks))
        log.info(f"wrote {rows} rows over {skus} products ({_described(zipf, quirks, noise)}) "
                 f"to {store.location(key)}")
    if "undated-export" in quirks and UNDATED_EXPORT_KEY not in store.list_keys(DATASETS_PREFIX):
        store.put_new(UNDATED_EXPORT_KEY, to_csv_bytes(tranche.data.head(100)))
    return key


def _described(zipf: Optional[float], quirks: FrozenSet[str], noise: str) -> str:
    shape = f"Zipf({zipf:g})" if zipf else "even"
    extra = f", quirks: {', '.join(sorted(quirks))}" if quirks else ""
    extra += f", {noise} noise" if noise != "normal" else ""
    return f"{shape} popularity{extra}"


def _parse_when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from exc


if __name__ == "__main__":
    parser = build_parser(__doc__.split("\n")[0])
    settings = stage_settings(log)
    add_store_argument(parser, settings)
    count = number_in(1, 10**9, "a count", int)
    parser.add_argument("--rows", type=count, default=1000, help="rows in the tranche")
    parser.add_argument("--skus", type=count, default=5, help="products in the catalogue")
    parser.add_argument(
        "--date", type=_parse_when, default=None, help="tranche date (ISO); none: now"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed, for a repeatable file")
    parser.add_argument(
        "--zipf",
        type=number_in(0.01, 5.0, "a Zipf exponent"),
        default=None,
        help="long-tailed catalogue: popularity of product k in proportion to k^-ZIPF (e.g. 1.1)",
    )
    parser.add_argument(
        "--queue-factor",
        type=number_in(0.1, 10.0, "a queue factor"),
        default=1.0,
        help="scale the day's queues (e.g. 1.5 for a busier week, to see drift warnings)",
    )
    parser.add_argument(
        "--quirk",
        action="append",
        choices=sorted(QUIRKS),
        default=[],
        help="inject a quirk of real drops (repeatable)",
    )
    parser.add_argument(
        "--noise",
        choices=NOISES,
        default="normal",
        help="the noise's shape: normal (as measured), skewed (a right tail of orders waiting "
        "for stock) or growing (sd growing with orders placed)",
    )
    parser.add_argument(
        "--weeks", type=number_in(1, 520, "weeks", int), default=1,
        help="write this many weekly tranches of the catalogue, the last dated --date",
    )
    parser.add_argument(
        "--world", choices=sorted(WORLDS), default="none",
        help="how the lines change from --change-week on: not at all, every rate up by a "
        "quarter (warehouse), or a tenth of the products' rates up by 60%% (tenth)",
    )
    parser.add_argument(
        "--change-week", type=number_in(1, 520, "a week", int), default=1,
        help="the first week (1 to --weeks) whose lines have changed",
    )
    parser.add_argument(
        "--if-empty", action="store_true", help="do nothing if the store holds a tranche"
    )
    args = parser.parse_args()
    with exit_on_failure(log, settings):
        main(
            open_store(args.store),
            args.rows,
            args.skus,
            args.date,
            args.seed,
            args.if_empty,
            args.zipf,
            args.quirk,
            args.queue_factor,
            args.noise,
            args.weeks,
            args.world,
            args.change_week,
        )
