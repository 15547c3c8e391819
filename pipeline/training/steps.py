"""The training run's steps, in order; each returns what the next needs, or refuses.

Every refusal is a TrainingRefused whose message names the problem and ends "nothing was
published": the stage exits 1 and the model being served stays.
"""
import time
from dataclasses import replace
from typing import Any, Dict, List, NamedTuple, Optional

import pandas as pd
from sklearn.base import clone

from pipeline.data import drift
from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.evaluation import (
    Comparison,
    Split,
    TaskMetrics,
    check_model_logic,
    compare_with_live,
    evaluate,
    mae_regression,
    split_by_product,
)
from pipeline.registry.leftovers import remove_leftovers
from pipeline.logs import configure_logger
from pipeline.artifact.model import ProductLinearModel
from pipeline.modelling.outliers import screen_outliers
from pipeline.modelling.pooling import MIN_ROWS_ALONE
from pipeline.artifact.promise import CHECKED_PROBABILITY, PromiseParams
from pipeline.modelling.promise_check import (
    REPORT_PROBABILITIES,
    Coverage,
    HeldOut,
    coverage_warning,
    held_out_within,
    promise_comparison,
    served_within,
)
from pipeline.modelling.popularity import Band, by_popularity
from pipeline.modelling.promise_fit import calibrate, promise_shape
from pipeline.registry.published import LoadedModel, sha256
from pipeline.registry.store import S3Store, Store
from pipeline.data.tranche import (
    DATASETS_PREFIX,
    HOURS,
    ORDERS,
    PRODUCT,
    dated_tranche_keys,
    undated_csv_keys,
)
from pipeline.data.reading import read_tranche
from pipeline.data.validation import validate_tranche
from pipeline.training.history_steps import Extended, Start, extend

log = configure_logger(__name__)


class TrainingRefused(Exception):
    """The tranche or the model it gave is not fit to serve; nothing was published."""


class RunSettings(NamedTuple):
    """The knobs of one run (train_model --help describes each)."""

    r2_error_threshold: float
    r2_warning_threshold: float
    max_mae_regression: float
    force: bool
    live_version: Optional[str]
    max_carry_weeks: int
    history: str = "on"  # "off": this week's tranche alone, as before learning from history


class FileBytes:
    """The week's file's bytes, handed over once to be parsed: the parser's is then the only
    reference, so a 10M-row file's 180 MB go as soon as it is read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def take(self) -> bytes:
        data, self._data = self._data, b""
        return data


class Tranche(NamedTuple):
    """The week's file, with what the metadata needs of it taken before it is parsed."""

    key: str
    location: str
    raw: FileBytes
    sha256: str
    lines: int


class Prepared(NamedTuple):
    split: Split  # validated rows, gross outliers dropped: training and held-out
    warnings: List[str]  # for the metadata and the report
    outliers: int
    drift: List[Dict[str, Any]]
    profile: Dict[str, Any]  # of the rows, for the metadata (drift.profile)
    rows: int
    high_orders: float  # the longest queue and the longest dispatch, for the logic checks
    longest_hours: float
    train_rows: int

    def held_out_only(self) -> "Prepared":
        """The same, the training rows let go (counted) once the model and its promises are
        fitted: only the held-out rows are reported on."""
        return self._replace(split=self.split._replace(train=self.split.train.iloc[:0].copy()))


class Fitted(NamedTuple):
    estimator: PooledLinearRegressor
    model: ProductLinearModel  # this week's products only
    metrics: TaskMetrics


class Calibrated(NamedTuple):
    promise: PromiseParams
    coverage: Coverage  # on held-out rows that did not calibrate it
    held: HeldOut  # which held-out rows were within it, at each of REPORT_PROBABILITIES
    live: Optional[HeldOut]  # the same for the live model's published promise (None: none)
    popularity: List[Band]  # error and promise width by popularity, and for this week alone


class Stopwatch:
    """Seconds spent in each named stretch of the run, for the metadata."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: Dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 4)
        self.last = now


def newest_tranche_key(store: Store) -> str:
    """Return the key of the tranche whose name carries the newest date."""
    keys = store.list_keys(DATASETS_PREFIX)
    for key in undated_csv_keys(keys):
        log.warning(
            f"ignoring {store.location(key)}: its name carries no date this pipeline reads "
            "(e.g. time_to_dispatch_2021-07-09T23:00:00.csv or time_to_dispatch_20210709.csv)"
        )
    dated = dated_tranche_keys(keys)
    if not dated:
        # Synthetic data is for laptops: never suggest writing it into a bucket.
        sample = "" if isinstance(store, S3Store) else (
            f", or make a sample with `python -m pipeline.generate_dataset {store.uri}`"
        )
        raise TrainingRefused(
            f"no tranche found in {store.location(DATASETS_PREFIX)} (expected CSVs named like "
            f"time_to_dispatch_2021-07-09T23:00:00.csv): upload the week's tranche there{sample}"
        )
    return dated[-1].key


def fetch_tranche(store: Store) -> Tranche:
    """Find the newest tranche and read it (leftovers of killed runs removed first)."""
    key = newest_tranche_key(store)
    remove_leftovers(store)  # of killed or failed runs, before this one writes
    raw = store.get_bytes(key)
    where = store.location(key)
    log.info(f"Retrieved tranche {where} ({len(raw)} bytes)")
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
    return Tranche(key, where, FileBytes(raw), sha256(raw), lines)


def prepare_data(tranche: Tranche, live: Optional[LoadedModel]) -> Prepared:
    """Parse and validate the tranche, drop gross outliers, name what drifted, and hold out a
    fifth of each product's rows."""
    where = tranche.location
    live_rows = live.metadata.dataset_section().rows_used if live else None
    try:
        report = validate_tranche(
            read_tranche(tranche.raw.take()), int(live_rows) if live_rows else None
        )
    except ValueError as exc:
        raise TrainingRefused(f"tranche {where} refused: {exc}") from exc
    for warning in report.warnings:
        log.warning(f"tranche {where}: {warning}")
    if report.refusals:
        for refusal in report.refusals:
            log.error(f"tranche {where}: {refusal}")
        raise TrainingRefused(
            f"tranche {where} refused ({len(report.refusals)} problem(s) above); "
            "nothing was published"
        )
    screened = screen_outliers(report.data)
    warnings = list(report.warnings)
    del report  # its rows, before screening
    if len(screened.outliers):
        warnings.append(_describe_outliers(screened.outliers))
        log.warning(f"tranche {where}: {warnings[-1]}")
    shifts = drift.compare(
        live.metadata.profile() if live else None, screened.data
    )
    for warning in drift.describe_drift(shifts):
        log.warning(warning)
    data, outliers = screened.data, len(screened.outliers)
    del screened  # split into training and held-out rows below: the whole is let go
    split = split_by_product(data)
    return Prepared(split, warnings, outliers, shifts, drift.profile(data), len(data),
                    float(data[ORDERS].max()), float(data[HOURS].max()), len(split.train))


def fit_lines(split: Split, estimator: Optional[PooledLinearRegressor], start: Start
              ) -> Fitted:
    """Fit the pooled lines (from the history the run starts from, if any), score the
    held-out rows."""
    fitted = clone(estimator or PooledLinearRegressor())
    fitted.fit(split.train[[PRODUCT, ORDERS]], split.train[HOURS], history=start.history,
               weeks=start.weeks)
    model = fitted.served_model()
    metrics = evaluate(model, split.test)
    log.info(
        f"Trained on {len(split.train)} rows, {len(model)} products; "
        f"held-out R²={metrics.r2:.4f}, MAE={metrics.mae:.4f} over {metrics.rows} rows"
    )
    return Fitted(fitted, model, metrics)


def check_fitted(fitted: Fitted, prepared: Prepared, run: RunSettings) -> None:
    """Refuse below the R² error threshold or on failed logic checks; warn below the warning."""
    r2 = fitted.metrics.r2
    if r2 < run.r2_error_threshold:
        raise TrainingRefused(
            f"held-out R² {r2:.4f} is below the error threshold {run.r2_error_threshold}; "
            "nothing was published"
        )
    if r2 < run.r2_warning_threshold:
        log.warning(
            f"held-out R² {r2:.4f} is below the warning threshold {run.r2_warning_threshold}"
        )
    problems = check_model_logic(fitted.model, prepared.high_orders, prepared.longest_hours,
                                 fitted.estimator.slope_sd_)
    if problems:
        raise TrainingRefused(
            "model failed its logic checks: " + "; ".join(problems) + "; nothing was published"
        )


def extend_catalogue(fitted: Fitted, live: Optional[LoadedModel], run: RunSettings,
                     start: Start, tranche_key: str) -> Extended:
    """Carry the products missing this week forward for a while, then drop them; leave the
    history for next week's run."""
    extended = extend(fitted.estimator, fitted.model, live, start, tranche_key,
                      run.max_carry_weeks)
    catalogue = extended.catalogue
    examples = ", ".join(catalogue.newly_dropped_examples)
    source = "from the history" if start.history is not None else "from the live model"
    log.info(
        f"Products: {len(fitted.model)} fitted, {pooled(fitted)} of them pooled toward the "
        f"catalogue line (fewer than {MIN_ROWS_ALONE} rows); {catalogue.carried} carried "
        f"forward {source}; {catalogue.newly_dropped} dropped after "
        f"{run.max_carry_weeks} week(s) missing" + (f" (e.g. {examples})" if examples else "")
    )
    transition = fitted.estimator.transition_
    if transition is not None:
        log.info(
            f"Learned from {extended.history.weeks - 1} earlier week(s): each week keeps "
            f"{transition.keep:.1%} of a line's information; lines scaled by "
            f"{transition.scale[1]:.3f} (rates) and {transition.scale[0]:.3f} (base hours); "
            f"{int((fitted.estimator.jumped_ > 0.5).sum())} product(s) whose rows broke "
            f"with their past (a jump, chance {transition.jump:.2%} a week)"
        )
    return extended


def pooled(fitted: Fitted) -> int:
    """How many products have too few rows for a line of their own."""
    return int((fitted.estimator.rows_ < MIN_ROWS_ALONE).sum())


def judge_against_live(
    model: ProductLinearModel, live: Optional[LoadedModel], test: pd.DataFrame,
    run: RunSettings,
) -> Optional[Comparison]:
    """Score the live model beside the new one on the same held-out rows; refuse a new model
    worse beyond tolerance (unless forced)."""
    if live is None:
        log.info("No live model: nothing to compare the new model with")
        return None
    comparison = compare_with_live(model, live.model, live.metadata.model_version, test)
    c = comparison
    if not c.rows:
        log.warning(f"live model {c.live_version} knows none of the held-out products: "
                    "no comparison")
        return c
    log.info(
        f"Champion {c.live_version} on this week's {c.rows} held-out rows: "
        f"MAE={c.live_mae:.4f}, R²={c.live_r2:.4f}; "
        f"challenger: MAE={c.new_mae:.4f}, R²={c.new_r2:.4f}"
    )
    regression = mae_regression(comparison, run.max_mae_regression)
    if regression and not run.force:
        raise TrainingRefused(f"{regression}; nothing was published (--force publishes anyway)")
    if regression:
        log.warning(f"{regression}; publishing anyway, as --force asks")
    return comparison


def calibrate_promises(
    fitted: Fitted, split: Split, extended: Extended, live: Optional[LoadedModel],
    warnings: List[str]
) -> Calibrated:
    """Calibrate the promises on the held-out rows; warn (never refuse) if their coverage,
    on rows that did not calibrate them, is off beyond sampling noise. Check the live
    model's published promise on the same rows too."""
    estimator = fitted.estimator
    codes = extended.catalogue.model.product_codes
    shape = promise_shape(estimator, codes, split.train, extended.carried_cov)
    promise = calibrate(shape, estimator, codes, split.test)
    held = held_out_within(shape, estimator, codes, split.test, REPORT_PROBABILITIES)
    coverage = held.coverages()[REPORT_PROBABILITIES.index(CHECKED_PROBABILITY)]
    log.info(
        f"Promises calibrated on {promise.calibration_rows} held-out rows; at "
        f"{CHECKED_PROBABILITY:g}, {coverage.coverage:.1%} of {coverage.rows} "
        "held-out orders were within theirs (each half under the other half's calibration)"
    )
    off = coverage_warning(coverage)
    if off:
        warnings.append(off)
        log.warning(off)
    live_held = None
    if live is not None and live.promise is not None:
        live_held = served_within(live.model, live.promise, split.test, REPORT_PROBABILITIES)
    bands = by_popularity(estimator, split, promise)
    rare = bands[0]
    if rare.width is not None and rare.width_alone is not None:
        log.info(f"Products with {rare.band} rows ({rare.products}): promises at "
                 f"{CHECKED_PROBABILITY:g} {rare.width:.2f} h wide, against {rare.width_alone:.2f}"
                 " h from this week's rows alone")
    return Calibrated(promise, coverage, held, live_held, bands)


def judge_promises(
    comparison: Optional[Comparison], calibrated: Calibrated, live: Optional[LoadedModel],
    test: pd.DataFrame,
) -> Optional[Comparison]:
    """Add both models' promise coverage at 0.9 on the comparison's rows: the live model's is
    how last week's promises held on this week (None: it has none). Never refuses."""
    if live is None or comparison is None or not comparison.rows:
        return comparison
    held_live, held_new = promise_comparison(calibrated.held, live.model, test, calibrated.live)
    shown = "no promises (trained before them)" if held_live is None else f"{held_live:.1%}"
    log.info(
        f"Promises at {CHECKED_PROBABILITY:g} on the same {comparison.rows} held-out rows: "
        f"champion {comparison.live_version}'s held for {shown}; the challenger's for "
        + (f"{held_new:.1%}" if held_new is not None else "none")
        + " (each half under the other's calibration)"
    )
    return replace(comparison, live_promise_coverage=held_live, new_promise_coverage=held_new)


def _describe_outliers(outliers: Any) -> str:
    worst = outliers.loc[outliers["z"].abs().idxmax()]
    return (
        f"dropped {len(outliers)} gross outlier row(s), each over 8 noise standard deviations "
        f"from its product's line (worst: {worst[PRODUCT]}, {worst[HOURS]:g} hours at "
        f"{worst[ORDERS]:g} orders)"
    )
