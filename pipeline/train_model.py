"""Train the time-to-dispatch model on the newest tranche and publish it.

Steps:
1. Find the newest tranche in the store (by the date in its key, not its upload time); name
   any CSV whose key carries no readable date.
2. Read and validate it: refuse it, naming every problem, or trim codes and drop bad rows
   with a warning; drop gross outliers per product, with a count.
3. Compare it with the live model's training data and warn, naming what drifted.
4. Split each product's rows into training and held-out rows; fit the pooled lines.
5. Evaluate R² and MAE on the held-out rows; refuse below the error threshold, warn below the
   warning threshold; check the served estimates' logic within what the noise allows.
6. Carry forward the live model's products missing this week (for a bounded number of weeks).
7. Score the live model on the same held-out rows; refuse a new model worse beyond tolerance.
   Calibrate the promises on the held-out rows; warn if their coverage, measured on rows that
   did not calibrate them, is off beyond sampling noise (pipeline/promise_fit.py). Add both
   models' promise coverage at 0.9 on the same rows to the comparison: the live model's is
   how last week's promises held on this week.
8. Publish the review report (with both models' promise calibration), the artifact, then its
   metadata (version, metrics, comparison, lineage, profile).
"""
import hashlib
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn
from sklearn.base import clone

from pipeline import drift
from pipeline.catalogue import MAX_CARRY_WEEKS, MAX_DROPPED_WEEKS, carry_forward
from pipeline.cli import (
    add_store_argument,
    build_parser,
    exit_on_failure,
    number_in,
    stage_settings,
)
from pipeline.estimator import MIN_ROWS_ALONE, PooledLinearRegressor
from pipeline.evaluation import (
    MAX_MAE_REGRESSION,
    check_model_logic,
    compare_with_live,
    evaluate,
    mae_regression,
    served_estimates,
    split_by_product,
)
from pipeline.leftovers import remove_leftovers
from pipeline.logs import configure_logger
from pipeline.model import ARTIFACT_FORMAT
from pipeline.outliers import screen_outliers
from pipeline.promise import (
    CHECKED_PROBABILITY,
    REPORT_PROBABILITIES,
    Calibration,
    coverage_warning,
)
from pipeline.promise_fit import (
    calibrate,
    calibration_of,
    held_out_within,
    orders_quintiles,
    promise_comparison,
    promise_shape,
    served_within,
)
from pipeline.registry import (
    LoadedModel,
    ModelMetadata,
    ModelVerificationError,
    artifact_key,
    check_servable,
    load_live_model,
    metadata_extra,
    new_model_version,
    publish_model,
    published_versions,
    read_metadata,
    report_key,
    serialise_model,
    sha256,
    signed_metadata,
)
from pipeline.report import HistoryPoint, ReportInputs, render
from pipeline.store import S3Store, Store, open_store
from pipeline.tranche import (
    DATASETS_PREFIX,
    HOURS,
    ORDERS,
    PRODUCT,
    dated_tranche_keys,
    undated_csv_keys,
)
from pipeline.validation import read_tranche, validate_tranche

log = configure_logger(__name__)

R2_ERROR_THRESHOLD = 0.5
R2_WARNING_THRESHOLD = 0.75
R2_THRESHOLD = number_in(-1.0, 1.0, "an R² threshold")


class TrainingRefused(Exception):
    """The tranche or the model it gave is not fit to serve; nothing was published."""


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


def git_commit() -> Optional[str]:
    """Return the commit the code was run from, when it is known."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def library_versions() -> Dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
        "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__,
    }


def main(
    store: Store,
    r2_error_threshold: float = R2_ERROR_THRESHOLD,
    r2_warning_threshold: float = R2_WARNING_THRESHOLD,
    signing_key: Optional[bytes] = None,
    max_mae_regression: float = MAX_MAE_REGRESSION,
    force: bool = False,
    live_version: Optional[str] = None,
    max_carry_weeks: int = MAX_CARRY_WEEKS,
    estimator: Optional[PooledLinearRegressor] = None,
) -> str:
    """Run the stage; return the published model's version. TrainingRefused if refused.

    `estimator` (cloned before fitting) lets a data scientist try other settings.
    """
    log.info("Starting train-model stage.")
    started = time.perf_counter()
    key = newest_tranche_key(store)
    remove_leftovers(store)  # of killed or failed runs, before this one writes
    raw = store.get_bytes(key)
    where = store.location(key)
    log.info(f"Retrieved tranche {where} ({len(raw)} bytes)")
    # What the metadata needs of the file, taken now: it is let go once parsed.
    raw_sha256 = sha256(raw)
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
    run = run_fingerprint(
        raw_sha256, r2_error_threshold, r2_warning_threshold, max_mae_regression, live_version,
        max_carry_weeks, estimator,
    )
    done = None if force else already_published(store, run)
    if done:
        log.info(
            f"Model {done} was trained on this same tranche by this same code and settings: "
            "nothing to do"
        )
        return done
    live = load_live_model(store, signing_key, live_version)
    live_rows = live.metadata.dataset.get("rows_used") if live else None
    try:
        report = validate_tranche(
            read_tranche(raw, lines), int(live_rows) if live_rows else None
        )
    except ValueError as exc:
        raise TrainingRefused(f"tranche {where} refused: {exc}") from exc
    del raw  # a 10M-row file is 180 MB
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
    data = screened.data
    shifts = drift.compare(metadata_extra(live.metadata, "profile") if live else None, data)
    for warning in drift.describe_drift(shifts):
        log.warning(warning)
    loaded = time.perf_counter()

    split = split_by_product(data)
    estimator = clone(estimator or PooledLinearRegressor())
    estimator.fit(split.train[[PRODUCT, ORDERS]], split.train[HOURS])
    fitted = estimator.served_model()
    fitted_at = time.perf_counter()
    metrics = evaluate(fitted, split.test)
    log.info(
        f"Trained on {len(split.train)} rows, {len(fitted)} products; "
        f"held-out R²={metrics.r2:.4f}, MAE={metrics.mae:.4f} over {metrics.rows} rows"
    )
    if metrics.r2 < r2_error_threshold:
        raise TrainingRefused(
            f"held-out R² {metrics.r2:.4f} is below the error threshold "
            f"{r2_error_threshold}; nothing was published"
        )
    if metrics.r2 < r2_warning_threshold:
        log.warning(
            f"held-out R² {metrics.r2:.4f} is below the warning threshold {r2_warning_threshold}"
        )
    problems = check_model_logic(fitted, data, estimator.slope_sd_)
    if problems:
        raise TrainingRefused(
            "model failed its logic checks: " + "; ".join(problems) + "; nothing was published"
        )
    catalogue = carry_forward(fitted, live.model if live else None, max_carry_weeks)
    pooled = int((estimator.rows_ < MIN_ROWS_ALONE).sum())
    examples = ", ".join(catalogue.newly_dropped_examples)
    log.info(
        f"Products: {len(fitted)} fitted, {pooled} of them pooled toward the "
        f"catalogue line (fewer than {MIN_ROWS_ALONE} rows); {catalogue.carried} carried "
        f"forward from the live model; {catalogue.newly_dropped} dropped after "
        f"{max_carry_weeks} week(s) missing" + (f" (e.g. {examples})" if examples else "")
    )
    comparison = _compare(catalogue.model, live, split.test)
    regression = mae_regression(comparison, max_mae_regression) if comparison else None
    if regression and not force:
        raise TrainingRefused(f"{regression}; nothing was published (--force publishes anyway)")
    if regression:
        log.warning(f"{regression}; publishing anyway, as --force asks")
    codes = catalogue.model.product_codes
    shape = promise_shape(estimator, codes, split.train)
    promise = calibrate(shape, estimator, codes, split.test)
    held = held_out_within(shape, estimator, codes, split.test, REPORT_PROBABILITIES)
    promise_coverage = held.coverages()[REPORT_PROBABILITIES.index(CHECKED_PROBABILITY)]
    log.info(
        f"Promises calibrated on {promise['calibration_rows']} held-out rows; at "
        f"{CHECKED_PROBABILITY:g}, {promise_coverage.coverage:.1%} of {promise_coverage.rows} "
        "held-out orders were within theirs (each half under the other half's calibration)"
    )
    live_held = served_within(live.model, live.promise, split.test, REPORT_PROBABILITIES) \
        if live is not None and live.promise is not None else None
    if live is not None and comparison and comparison["rows"]:
        comparison.update(promise_comparison(held, live.model, split.test, live_held))
        _log_promise_comparison(comparison)
    off = coverage_warning(promise_coverage)
    if off:
        warnings.append(off)
        log.warning(off)
    evaluated = time.perf_counter()

    version = new_model_version()
    quintile, labels = orders_quintiles(split.test)
    calibrations = [calibration_of("this model", version, held, quintile, labels)]
    if live is not None and live_held is not None:
        calibrations.append(calibration_of("live model", live.metadata.model_version, live_held,
                                           quintile, labels))
    artifact = serialise_model(catalogue.model, promise)
    metadata = ModelMetadata(
        model_version=version,
        created_at=datetime.now(timezone.utc).isoformat(),
        artifact_key=artifact_key(version),
        artifact_sha256=sha256(artifact),
        artifact_format=ARTIFACT_FORMAT,
        metrics={
            "r2": metrics.r2, "mae": metrics.mae, "test_rows": metrics.rows,
            "promise_coverage": promise_coverage.coverage,
        },
        dataset={
            "key": key,
            "location": where,
            "sha256": raw_sha256,
            "rows_in_file": lines - 1,
            "rows_used": len(data),
            "train_rows": len(split.train),
            "test_rows": len(split.test),
            "outliers_dropped": len(screened.outliers),
            "warnings": warnings,
        },
        thresholds={
            "r2_error": r2_error_threshold,
            "r2_warning": r2_warning_threshold,
            "max_mae_regression": max_mae_regression,
            "forced": force,
        },
        comparison=comparison,
        run_fingerprint=run,
        report_key=report_key(version),
        catalogue={
            "products": len(catalogue.model),
            "fitted": len(fitted),
            "pooled": pooled,
            "carried_products": catalogue.carried,
            "dropped_products": catalogue.dropped,
            "newly_dropped": catalogue.newly_dropped,
            "max_carry_weeks": max_carry_weeks,
            "max_dropped_weeks": MAX_DROPPED_WEEKS,
        },
        pooling={
            "catalogue_intercept": estimator.catalogue_intercept_,
            "catalogue_slope": estimator.catalogue_slope_,
            "noise_sd": estimator.noise_sd_,
            "prior_scale": estimator.prior_scale,
        },
        profile=drift.profile(data),
        drift=shifts,
        library_versions=library_versions(),
        git_commit=git_commit(),
        timings_seconds={
            "load_and_validate": round(loaded - started, 4),
            "fit": round(fitted_at - loaded, 4),
            "evaluate_and_check": round(evaluated - fitted_at, 4),
        },
    )
    try:  # before anything is written: what the service would refuse is never published
        check_servable(version, artifact, signed_metadata(metadata, signing_key), signing_key)
    except ModelVerificationError as exc:
        raise TrainingRefused(f"{exc}; nothing was published") from exc
    review = review_report(store, metadata, split.test, catalogue.model, warnings, calibrations)
    store.put_new(report_key(version), review.encode("utf-8"))
    metadata_location = publish_model(store, version, artifact, metadata, signing_key)
    signed = "signed" if signing_key else "unsigned (no TTD_SIGNING_KEY)"
    log.info(f"Published model {version} to {store.location(metadata_location)}, {signed}")
    return version


def code_fingerprint() -> str:
    """Return the SHA-256 of the pipeline's own source: which code trained a model."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_fingerprint(tranche_sha256: str, *settings: Any) -> str:
    """Return what makes a training run: its tranche, the code, and every setting."""
    described = repr([s.get_params() if hasattr(s, "get_params") else s for s in settings])
    return sha256(f"{tranche_sha256}\0{code_fingerprint()}\0{described}".encode())


def already_published(store: Store, run: str) -> Optional[str]:
    """Return the newest model's version if this same run published it (a re-run is a no-op)."""
    versions = published_versions(store)
    if not versions:
        return None
    try:
        newest = read_metadata(store, versions[0])
    except ModelVerificationError:
        return None
    return versions[0] if metadata_extra(newest, "run_fingerprint") == run else None


def review_report(
    store: Store,
    metadata: ModelMetadata,
    test: pd.DataFrame,
    model: Any,
    warnings: List[str],
    calibrations: Sequence[Calibration] = (),
    history_length: int = 10,
) -> str:
    """Return the HTML review report of a model about to be published."""
    history: List[HistoryPoint] = []
    for version in reversed(published_versions(store)[: history_length - 1]):
        try:
            old = read_metadata(store, version)
        except ModelVerificationError:
            continue
        history.append(_history_point(old))
    history.append(_history_point(metadata))
    held_out = test.assign(estimate=served_estimates(model, test))
    extra = metadata.model_extra or {}
    return render(
        ReportInputs(
            version=metadata.model_version,
            created_at=metadata.created_at,
            tranche=str(metadata.dataset.get("location", "")),
            metrics=metadata.metrics,
            comparison=extra.get("comparison"),
            forced=bool((extra.get("thresholds") or {}).get("forced")),
            held_out=held_out,
            drift=extra.get("drift") or [],
            history=history,
            warnings=warnings,
            calibrations=list(calibrations),
        )
    )


def _history_point(metadata: ModelMetadata) -> HistoryPoint:
    comparison = metadata_extra(metadata, "comparison") or {}
    return HistoryPoint(
        metadata.model_version,
        metadata.created_at,
        metadata.metrics.get("r2"),
        metadata.metrics.get("mae"),
        comparison.get("live_mae"),
    )


def _describe_outliers(outliers: Any) -> str:
    worst = outliers.loc[outliers["z"].abs().idxmax()]
    return (
        f"dropped {len(outliers)} gross outlier row(s), each over 8 noise standard deviations "
        f"from its product's line (worst: {worst[PRODUCT]}, {worst[HOURS]:g} hours at "
        f"{worst[ORDERS]:g} orders)"
    )


def _compare(
    new: Any, live: Optional[LoadedModel], test: Any
) -> Optional[Dict[str, Any]]:
    """Score the live model beside the new one on the same held-out rows, and log both."""
    if live is None:
        log.info("No live model: nothing to compare the new model with")
        return None
    comparison = compare_with_live(new, live.model, live.metadata.model_version, test)
    if not comparison["rows"]:
        log.warning(
            f"live model {comparison['live_version']} knows none of the held-out products: "
            "no comparison"
        )
        return comparison
    log.info(
        f"Champion {comparison['live_version']} on this week's {comparison['rows']} held-out "
        f"rows: MAE={comparison['live_mae']:.4f}, R²={comparison['live_r2']:.4f}; "
        f"challenger: MAE={comparison['new_mae']:.4f}, R²={comparison['new_r2']:.4f}"
    )
    return comparison


def _log_promise_comparison(comparison: Dict[str, Any]) -> None:
    live, new = comparison["live_promise_coverage"], comparison["new_promise_coverage"]
    shown = "no promises (trained before them)" if live is None else f"{live:.1%}"
    log.info(
        f"Promises at {CHECKED_PROBABILITY:g} on the same {comparison['rows']} held-out rows: "
        f"champion {comparison['live_version']}'s held for {shown}; the challenger's for "
        + (f"{new:.1%}" if new is not None else "none") + " (each half under the other's "
        "calibration)"
    )


if __name__ == "__main__":
    parser = build_parser(__doc__.split("\n")[0])
    settings = stage_settings(log)
    add_store_argument(parser, settings)
    parser.add_argument(
        "--r2-error-threshold", type=R2_THRESHOLD, default=R2_ERROR_THRESHOLD,
        help="refuse a model whose held-out R² is below this",
    )
    parser.add_argument(
        "--r2-warning-threshold", type=R2_THRESHOLD, default=R2_WARNING_THRESHOLD,
        help="warn about a model whose held-out R² is below this",
    )
    parser.add_argument(
        "--max-mae-regression",
        type=number_in(0.0, 10.0, "a tolerance (0.05 is 5%)"),
        default=MAX_MAE_REGRESSION,
        help="refuse a model whose held-out MAE is worse than the live model's by more than "
        "this fraction",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="publish even if worse than the live model, or already published from this "
        "tranche by this code",
    )
    parser.add_argument(
        "--prior-scale",
        type=number_in(0.0, float("inf"), "a prior scale"),
        default=1.0,
        help="pooling strength: 1 as learned from the data (empirical Bayes); smaller pools "
        "harder (0: one line for every product); inf: each product alone",
    )
    parser.add_argument(
        "--carry-weeks",
        type=number_in(0, 52, "weeks", int),
        default=MAX_CARRY_WEEKS,
        help="weeks a product missing from the tranche keeps the live model's estimate",
    )
    args = parser.parse_args()
    if args.r2_error_threshold > args.r2_warning_threshold:
        parser.error(
            f"--r2-error-threshold {args.r2_error_threshold} is above --r2-warning-threshold "
            f"{args.r2_warning_threshold}: a model would be refused before it could be warned "
            "about; swap them"
        )
    with exit_on_failure(log, settings):
        main(
            open_store(args.store),
            args.r2_error_threshold,
            args.r2_warning_threshold,
            settings.signing_key_bytes(),
            args.max_mae_regression,
            args.force,
            settings.model_version,
            args.carry_weeks,
            PooledLinearRegressor(prior_scale=args.prior_scale),
        )
