"""The last step: the model's metadata, its review report (with both models' promise
calibration), and the publication itself.

Nothing is written until the model has passed every check the service applies when it
loads one (registry.check_servable), so a model the service would refuse is never published.
"""
from datetime import datetime, timezone
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import pandas as pd

from pipeline.modelling.catalogue import MAX_DROPPED_WEEKS
from pipeline.modelling.evaluation import served_estimates
from pipeline.logs import configure_logger
from pipeline.artifact.model import ARTIFACT_FORMAT
from pipeline.modelling.evaluation import Comparison
from pipeline.modelling.popularity import Band
from pipeline.modelling.promise_check import Calibration, calibration_of, orders_quintiles
from pipeline.registry.metadata import ModelMetadata
from pipeline.registry.published import (
    ModelVerificationError,
    artifact_key,
    check_servable,
    new_model_version,
    published_versions,
    read_metadata,
    report_key,
    serialise_model,
    sha256,
    signed_metadata,
    write_model,
)
from pipeline.registry.states import Written, serialise_state, state_section
from pipeline.training.history_steps import Extended, Start
from pipeline.training.report import HistoryPoint, ReportInputs, render
from pipeline.registry.store import Store
from pipeline.training.provenance import git_commit, library_versions
from pipeline.training.steps import (
    Calibrated,
    Fitted,
    Prepared,
    RunSettings,
    Tranche,
    TrainingRefused,
    pooled,
)

log = configure_logger(__name__)


class Publication(NamedTuple):
    """Everything the metadata and the report say about the new model."""

    tranche: Tranche
    prepared: Prepared
    fitted: Fitted
    extended: Extended
    start: Start
    comparison: Optional[Comparison]
    calibrated: Calibrated
    run: RunSettings
    fingerprint: str
    timings: Dict[str, float]


def build_metadata(version: str, artifact: bytes, state: Written, made: Publication
                   ) -> ModelMetadata:
    """Return the new model's metadata: version, metrics, comparison, lineage, profile."""
    metrics, estimator = made.fitted.metrics, made.fitted.estimator
    return ModelMetadata(
        model_version=version,
        created_at=datetime.now(timezone.utc).isoformat(),
        artifact_key=artifact_key(version),
        artifact_sha256=sha256(artifact),
        artifact_format=ARTIFACT_FORMAT,
        metrics={
            "r2": metrics.r2, "mae": metrics.mae, "test_rows": metrics.rows,
            "promise_coverage": made.calibrated.coverage.coverage,
        },
        dataset=_dataset_section(made),
        thresholds={
            "r2_error": made.run.r2_error_threshold,
            "r2_warning": made.run.r2_warning_threshold,
            "max_mae_regression": made.run.max_mae_regression,
            "forced": made.run.force,
        },
        comparison=made.comparison.section() if made.comparison else None,
        run_fingerprint=made.fingerprint,
        report_key=report_key(version),
        catalogue=_catalogue_section(made),
        history=state_section(
            state, made.start.started_from, made.start.began, made.extended.history,
            {"mode": made.run.history, "jumped": int((estimator.jumped_ > 0.5).sum())},
        ),
        pooling={
            "catalogue_intercept": estimator.catalogue_intercept_,
            "catalogue_slope": estimator.catalogue_slope_,
            "noise_sd": estimator.noise_sd_,
            "prior_scale": estimator.prior_scale,
        },
        profile=made.prepared.profile,
        drift=made.prepared.drift,
        popularity=[band.section() for band in made.calibrated.popularity],
        library_versions=library_versions(),
        git_commit=git_commit(),
        timings_seconds=made.timings,
    )


def _dataset_section(made: Publication) -> Dict[str, Any]:
    """The tranche learned from, and what was made of its rows."""
    tranche, prepared = made.tranche, made.prepared
    return {
        "key": tranche.key,
        "location": tranche.location,
        "sha256": tranche.sha256,
        "rows_in_file": tranche.lines - 1,
        "rows_used": prepared.rows,
        "train_rows": prepared.train_rows,
        "test_rows": len(prepared.split.test),
        "outliers_dropped": prepared.outliers,
        "warnings": prepared.warnings,
    }


def _catalogue_section(made: Publication) -> Dict[str, Any]:
    """The products answered: fitted this week, carried, dropped (counts; the codes live in
    the artifact)."""
    catalogue = made.extended.catalogue
    return {
        "products": len(catalogue.model),
        "fitted": len(made.fitted.model),
        "pooled": pooled(made.fitted),
        "carried_products": catalogue.carried,
        "dropped_products": catalogue.dropped,
        "newly_dropped": catalogue.newly_dropped,
        "max_carry_weeks": made.run.max_carry_weeks,
        "max_dropped_weeks": MAX_DROPPED_WEEKS,
    }


def publish(store: Store, made: Publication, signing_key: Optional[bytes]) -> str:
    """Check the model as the service will, write its report, then publish it; return its
    version."""
    version = new_model_version()
    artifact = serialise_model(made.extended.catalogue.model, made.calibrated.promise)
    state = serialise_state(made.extended.history)
    written = Written.of(version, state)
    metadata = build_metadata(version, artifact, written, made)
    metadata_json = signed_metadata(metadata, signing_key)
    try:  # before anything is written: what the service would refuse is never published
        check_servable(version, artifact, metadata_json, signing_key)
    except ModelVerificationError as exc:
        raise TrainingRefused(f"{exc}; nothing was published") from exc
    review = review_report(
        store, metadata, made.comparison, made.prepared.split.test, made.extended.catalogue.model,
        made.prepared.warnings, report_calibrations(version, made), made.calibrated.popularity,
    )
    store.put_new(report_key(version), review.encode("utf-8"))
    store.put_new(written.key, state)  # before the metadata that makes the model visible
    metadata_location = write_model(store, version, artifact, metadata_json)  # as checked
    signed = "signed" if signing_key else "unsigned (no TTD_SIGNING_KEY)"
    log.info(f"Published model {version} to {store.location(metadata_location)}, {signed}")
    return version


def report_calibrations(version: str, made: Publication) -> List[Calibration]:
    """Return this model's promise calibration, then the live model's if it has promises."""
    quintile, labels = orders_quintiles(made.prepared.split.test)
    calibrations = [calibration_of("this model", version, made.calibrated.held, quintile,
                                   labels)]
    if made.calibrated.live is not None:
        live_version = made.comparison.live_version if made.comparison else "?"
        calibrations.append(calibration_of("live model", live_version, made.calibrated.live,
                                           quintile, labels))
    return calibrations


def review_report(
    store: Store,
    metadata: ModelMetadata,
    comparison: Optional[Comparison],
    test: pd.DataFrame,
    model: Any,
    warnings: List[str],
    calibrations: Sequence[Calibration] = (),
    popularity: Sequence[Band] = (),
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
    return render(
        ReportInputs(
            version=metadata.model_version,
            created_at=metadata.created_at,
            tranche=metadata.dataset_section().location or "",
            metrics=metadata.metrics,
            comparison=comparison,
            forced=metadata.thresholds_section().forced,
            held_out=held_out,
            drift=metadata.extra("drift") or [],
            history=history,
            warnings=warnings,
            calibrations=list(calibrations),
            popularity=list(popularity),
            weeks=metadata.history_section().weeks,
        )
    )


def _history_point(metadata: ModelMetadata) -> HistoryPoint:
    comparison = metadata.comparison_section()
    return HistoryPoint(
        metadata.model_version,
        metadata.created_at,
        metadata.metrics.get("r2"),
        metadata.metrics.get("mae"),
        comparison.live_mae if comparison else None,
    )
