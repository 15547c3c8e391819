"""Train the time-to-dispatch model on the newest tranche and publish it.

Steps:
1. Find the newest tranche in the store (by the date in its key, not its upload time).
2. Read and validate it: refuse it, naming every problem, or drop bad rows with a warning.
3. Split each product's rows into training and held-out rows; fit one line per product.
4. Evaluate R² and MAE on the held-out rows; refuse below the error threshold, warn below the
   warning threshold.
5. Check the model's logic: estimates rise with orders, are never negative, never absurd.
6. Publish the artifact, then its metadata (version, metrics, data lineage, versions, timings).
"""
import argparse
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Optional

import joblib
import numpy as np
import pandas as pd

from pipeline.cli import add_store_argument, exit_on_failure
from pipeline.leftovers import remove_leftovers
from pipeline.logs import configure_logger
from pipeline.model import (
    ARTIFACT_FORMAT,
    check_model_logic,
    evaluate,
    fit_per_product,
    split_by_product,
)
from pipeline.registry import (
    ModelMetadata,
    ModelVerificationError,
    artifact_key,
    load_newest_model,
    new_model_version,
    publish_model,
    serialise_model,
    sha256,
)
from pipeline.settings import Settings
from pipeline.store import Store, open_store
from pipeline.tranche import DATASETS_PREFIX, dated_tranche_keys
from pipeline.validation import read_tranche, validate_tranche

log = configure_logger(__name__)

R2_ERROR_THRESHOLD = 0.5
R2_WARNING_THRESHOLD = 0.75


class TrainingRefused(Exception):
    """The tranche or the model it gave is not fit to serve; nothing was published."""


def newest_tranche_key(store: Store) -> str:
    """Return the key of the tranche whose name carries the newest date."""
    dated = dated_tranche_keys(store.list_keys(DATASETS_PREFIX))
    if not dated:
        raise TrainingRefused(
            f"no tranche found in {store.location(DATASETS_PREFIX)} (expected CSVs named like "
            "time_to_dispatch_2021-07-09T23:00:00.csv): upload one, or make a sample with "
            f"`python -m pipeline.generate_dataset {store.uri}`"
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
    }


def _previous_rows(store: Store, signing_key: Optional[bytes]) -> Optional[int]:
    """Return how many rows the current model was trained on, if there is one."""
    try:
        rows = load_newest_model(store, signing_key).metadata.dataset.get("rows_used")
    except ModelVerificationError:
        return None
    return int(rows) if rows else None


def main(
    store: Store,
    r2_error_threshold: float = R2_ERROR_THRESHOLD,
    r2_warning_threshold: float = R2_WARNING_THRESHOLD,
    signing_key: Optional[bytes] = None,
) -> str:
    """Run the stage; return the published model's version. TrainingRefused if refused."""
    log.info("Starting train-model stage.")
    started = time.perf_counter()
    key = newest_tranche_key(store)
    remove_leftovers(store)  # of killed or failed runs, before this one writes
    raw = store.get_bytes(key)
    log.info(f"Retrieved tranche {store.location(key)} ({len(raw)} bytes)")
    try:
        report = validate_tranche(read_tranche(raw), _previous_rows(store, signing_key))
    except ValueError as exc:
        raise TrainingRefused(f"tranche {store.location(key)} refused: {exc}") from exc
    for warning in report.warnings:
        log.warning(f"tranche {store.location(key)}: {warning}")
    if report.refusals:
        for refusal in report.refusals:
            log.error(f"tranche {store.location(key)}: {refusal}")
        raise TrainingRefused(
            f"tranche {store.location(key)} refused ({len(report.refusals)} problem(s) above); "
            "nothing was published"
        )
    data = report.data
    loaded = time.perf_counter()

    split = split_by_product(data)
    fit = fit_per_product(split.train)
    fitted = time.perf_counter()
    metrics = evaluate(fit.model, split.test)
    log.info(
        f"Trained on {len(split.train)} rows, {len(fit.model.product_codes)} products; "
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
    problems = check_model_logic(fit.model, data)
    if problems:
        raise TrainingRefused("model failed its logic checks: " + "; ".join(problems))
    evaluated = time.perf_counter()

    version = new_model_version()
    artifact = serialise_model(fit.model)
    metadata = ModelMetadata(
        model_version=version,
        created_at=datetime.now(timezone.utc).isoformat(),
        artifact_key=artifact_key(version),
        artifact_sha256=sha256(artifact),
        artifact_format=ARTIFACT_FORMAT,
        metrics={"r2": metrics.r2, "mae": metrics.mae, "test_rows": metrics.rows},
        dataset={
            "key": key,
            "location": store.location(key),
            "sha256": sha256(raw),
            "rows_in_file": len(raw.splitlines()) - 1,
            "rows_used": len(data),
            "train_rows": len(split.train),
            "test_rows": len(split.test),
            "unfitted_products": fit.unfitted_products,
        },
        product_codes=list(fit.model.product_codes),
        thresholds={"r2_error": r2_error_threshold, "r2_warning": r2_warning_threshold},
        library_versions=library_versions(),
        git_commit=git_commit(),
        timings_seconds={
            "load_and_validate": round(loaded - started, 4),
            "fit": round(fitted - loaded, 4),
            "evaluate_and_check": round(evaluated - fitted, 4),
        },
    )
    metadata_location = publish_model(store, version, artifact, metadata, signing_key)
    signed = "signed" if signing_key else "unsigned (no TTD_SIGNING_KEY)"
    log.info(f"Published model {version} to {store.location(metadata_location)}, {signed}")
    return version


def _fraction(text: str) -> float:
    value = float(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"an R² threshold lies in [-1, 1], got {value}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    settings = Settings()
    add_store_argument(parser, settings)
    parser.add_argument("--r2-error-threshold", type=_fraction, default=R2_ERROR_THRESHOLD)
    parser.add_argument("--r2-warning-threshold", type=_fraction, default=R2_WARNING_THRESHOLD)
    args = parser.parse_args()
    with exit_on_failure(log, settings):
        main(
            open_store(args.store),
            args.r2_error_threshold,
            args.r2_warning_threshold,
            settings.signing_key_bytes(),
        )
