"""Train the time-to-dispatch model on the newest tranche and publish it.

Steps:
1. Find the newest tranche in the store (by the date in its key, not its upload time); name
   any CSV whose key carries no readable date.
2. Read and validate it: refuse it, naming every problem, or trim codes and drop bad rows
   with a warning; drop gross outliers per product, with a count.
3. Compare it with the live model's training data and warn, naming what drifted.
4. Read the history the live model's run left (each product's line as the weeks before
   taught it); without one, start from the live model's lines, or from nothing.
5. Split each product's rows into training and held-out rows; fit the pooled lines on the
   former, from the history and this week's rows (pipeline/modelling/history.py).
6. Evaluate R² and MAE on the held-out rows; refuse below the error threshold, warn below the
   warning threshold; check the served estimates' logic within what the noise allows.
7. Carry forward the products missing this week, as the history leaves them, for a bounded
   number of weeks; then drop them. Leave the history for next week.
8. Score the live model on the same held-out rows; refuse a new model worse beyond tolerance.
   Calibrate the promises on the held-out rows; warn if their coverage, measured on rows that
   did not calibrate them, is off beyond sampling noise (pipeline/modelling/promise_fit.py).
   Add both models' promise coverage at 0.9 on the same rows to the comparison: the live
   model's is how last week's promises held on this week.
9. Publish the review report (with both models' promise calibration), the artifact, the
   history, then the metadata (version, metrics, comparison, lineage, profile).
"""
from typing import Optional

from pipeline.modelling.catalogue import MAX_CARRY_WEEKS
from pipeline.cli import (
    add_store_argument,
    build_parser,
    exit_on_failure,
    number_in,
    stage_settings,
)
from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.evaluation import MAX_MAE_REGRESSION
from pipeline.logs import configure_logger
from pipeline.registry.published import load_live_model
from pipeline.modelling.history import MAX_UNSEEN_WEEKS
from pipeline.registry.store import Store, open_store
from pipeline.training.history_steps import HISTORY_MODES, load_history
from pipeline.training.provenance import already_published, run_fingerprint
from pipeline.training.publication import Publication, publish
from pipeline.training.steps import (
    RunSettings,
    Stopwatch,
    TrainingRefused,
    calibrate_promises,
    check_fitted,
    extend_catalogue,
    fetch_tranche,
    fit_lines,
    judge_against_live,
    judge_promises,
    newest_tranche_key,
    prepare_data,
)

log = configure_logger(__name__)

R2_ERROR_THRESHOLD = 0.5
R2_WARNING_THRESHOLD = 0.75
R2_THRESHOLD = number_in(-1.0, 1.0, "an R² threshold")

__all__ = ["TrainingRefused", "main", "newest_tranche_key"]


def main(
    store: Store,
    r2_error_threshold: float = R2_ERROR_THRESHOLD,
    r2_warning_threshold: float = R2_WARNING_THRESHOLD,
    signing_key: Optional[bytes] = None,
    max_mae_regression: float = MAX_MAE_REGRESSION,
    force: bool = False,
    live_version: Optional[str] = None,
    max_carry_weeks: Optional[int] = None,
    estimator: Optional[PooledLinearRegressor] = None,
    history: str = "on",
) -> str:
    """Run the stage; return the published model's version. TrainingRefused if refused.

    `estimator` (cloned before fitting) lets a data scientist try other settings;
    `history` "off" learns from this week's tranche alone, as before history.
    """
    log.info("Starting train-model stage.")
    if max_carry_weeks is None:
        max_carry_weeks = MAX_UNSEEN_WEEKS if history == "on" else MAX_CARRY_WEEKS
    run = RunSettings(r2_error_threshold, r2_warning_threshold, max_mae_regression, force,
                      live_version, max_carry_weeks, history)
    clock = Stopwatch()
    tranche = fetch_tranche(store)
    fingerprint = run_fingerprint(
        tranche.sha256, r2_error_threshold, r2_warning_threshold, max_mae_regression,
        live_version, max_carry_weeks, estimator, history,
    )
    done = None if force else already_published(store, fingerprint)
    if done:
        log.info(f"Model {done} was trained on this same tranche by this same code and "
                 "settings: nothing to do")
        return done
    live = load_live_model(store, signing_key, live_version)
    prepared = prepare_data(tranche, live)
    start = load_history(store, live, tranche.key, history, signing_key)
    clock.lap("load_and_validate")
    fitted = fit_lines(prepared.split, estimator, start)
    clock.lap("fit")
    check_fitted(fitted, prepared, run)
    extended = extend_catalogue(fitted, live, run, start, tranche.key)
    start = start._replace(history=None)  # carried into extended.history: let it go
    test = prepared.split.test
    comparison = judge_against_live(extended.catalogue.model, live, test, run)
    calibrated = calibrate_promises(fitted, prepared.split, extended, live, prepared.warnings)
    comparison = judge_promises(comparison, calibrated, live, test)
    clock.lap("evaluate_and_check")
    prepared = prepared.held_out_only()  # fitted and calibrated: the training rows let go
    del live  # judged: let go before publishing
    return publish(store, Publication(tranche, prepared, fitted, extended, start, comparison,
                                      calibrated, run, fingerprint, clock.laps), signing_key)


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
        type=number_in(0, 104, "weeks", int),
        default=None,
        help=f"tranches in a row a product may miss and still be answered (default "
        f"{MAX_UNSEEN_WEEKS}, about a year; {MAX_CARRY_WEEKS} with --history off)",
    )
    parser.add_argument(
        "--history",
        choices=HISTORY_MODES,
        default="on",
        help="on: learn from the history of every week before (the state the live model's "
        "run left); off: from the newest tranche alone, as before, for comparison and "
        "emergencies",
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
            args.history,
        )
