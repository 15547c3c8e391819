"""The training run's history steps: which state it learns from, and the one it leaves.

A run learns from the state the live model's run left (the pinned model's, in a rollback),
verified against that model's metadata. Without one (a store from before history, or a
state missing or altered), it starts from the live model's own lines and their
uncertainty, which is where the release before history stood, and says so; without a live
model, or with `--history off`, it learns from this week alone.
"""
from typing import NamedTuple, Optional, Tuple

import numpy as np

from pipeline.artifact.model import CatalogueState, ProductLinearModel
from pipeline.artifact.promise import PromiseParams
from pipeline.data.tranche import timestamp_in_key
from pipeline.logs import configure_logger
from pipeline.codes.product_codes import ProductCodes
from pipeline.modelling.catalogue import Catalogue, carry_forward
from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.history import (
    START,
    History,
    ProductHistory,
    Transition,
    advance,
    carried,
    empty,
    from_lines,
    to_orders,
)
from pipeline.registry.metadata import ModelMetadata
from pipeline.registry.published import (
    LoadedModel,
    ModelVerificationError,
    check_signature,
    read_metadata,
)
from pipeline.registry.states import StateError, read_state, version_of_state
from pipeline.registry.store import Store, StoreError

log = configure_logger(__name__)

HISTORY_MODES = ("on", "off")


class Start(NamedTuple):
    """What a run learns from: a history or none, where it came from, how long ago."""

    history: Optional[History]
    started_from: Optional[str]  # the state's key, when it came from one
    began: str  # for the log and the metadata: "state", "model <version>", "fresh", "off"
    weeks: int  # weeks between the history's newest tranche and this one


def load_history(store: Store, live: Optional[LoadedModel], tranche_key: str, mode: str,
                 signing_key: Optional[bytes] = None) -> Start:
    """Return the history this week's run learns from (modelling/history.py)."""
    if mode == "off":
        log.info("History off (--history off): learning from this week's tranche alone")
        return Start(None, None, "off", 1)
    if live is None:
        log.info("No live model: learning from this week's tranche alone")
        return Start(None, None, "fresh", 1)
    metadata = live.metadata
    if metadata.dataset_section().key == tranche_key:  # a forced re-run of the live week
        return _from_parent(store, metadata, tranche_key, signing_key)
    if metadata.history_section().state_key:
        start = _from_state(store, metadata, tranche_key)
        if start is not None:
            return _sharing_codes(start, live.model.product_codes)
    return _from_model(live, tranche_key)


def _sharing_codes(start: Start, codes: ProductCodes) -> Start:
    """The start, its products' codes the live model's own object when they are the same
    codes (a state holds its model's products, in order): this week's products are then
    looked up among them once, for the history and for the judging alike."""
    history = start.history
    if history is None or history.products.codes != codes:
        return start
    products = history.products._replace(codes=codes)
    return start._replace(history=history._replace(products=products))


def _from_parent(store: Store, metadata: ModelMetadata, tranche_key: str,
                 signing_key: Optional[bytes]) -> Start:
    """Start a re-run of the live model's week from the state that model learned from (its
    own lines already hold this week), or from this week alone."""
    parent = metadata.history_section().started_from
    if parent:
        try:
            older = read_metadata(store, version_of_state(parent))
        except (StoreError, StateError, ModelVerificationError) as exc:
            log.warning(f"cannot read the metadata of the model whose state {parent} is: {exc}")
        else:
            start = _from_state(store, older, tranche_key, signing_key)
            if start is not None:
                return start
    log.info(f"Model {metadata.model_version} already learned {tranche_key}: learning from "
             "this week's tranche alone")
    return Start(None, None, "fresh", 1)


def _from_state(store: Store, metadata: ModelMetadata, tranche_key: str,
                signing_key: Optional[bytes] = None) -> Optional[Start]:
    """Start from the state a model's run left, if it verifies and is older than this week."""
    version = metadata.model_version
    try:
        check_signature(metadata, signing_key, f"model {version}")
        history = read_state(store, metadata)
    except (StateError, ModelVerificationError) as exc:
        log.warning(f"cannot learn from model {version}'s state: {exc}; starting from "
                    f"model {version}'s lines instead (the weeks before it are lost)")
        return None
    weeks = weeks_between(history.tranche_key, tranche_key)
    if weeks <= 0:
        return None
    key = metadata.history_section().state_key
    log.info(f"Learning from the history of {history.weeks} week(s) in {store.location(key or '')}"
             f" ({len(history.products.codes)} products, {weeks} week(s) before this one)")
    return Start(history, key, "state", weeks)


def _from_model(live: LoadedModel, tranche_key: str) -> Start:
    history = model_history(live.model, live.promise,
                            live.metadata.dataset_section().key or tranche_key)
    version = live.metadata.model_version
    if history is None:
        log.info(f"Model {version} was trained before promises (no line uncertainty to start "
                 "from): learning from this week's tranche alone")
        return Start(None, None, "fresh", 1)
    log.info(f"No state to learn from: starting from model {version}'s lines and their "
             "uncertainty")
    return Start(history, None, f"model {version}",
                 max(weeks_between(history.tranche_key, tranche_key), 1))


def model_history(model: ProductLinearModel, promise: Optional[PromiseParams],
                  tranche_key: str) -> Optional[History]:
    """A history that starts from a published model: its lines, their uncertainty (its
    promise's), and its products' weeks missing; None for a model without promises."""
    if promise is None:
        return None
    lines = np.column_stack([model.intercepts, model.slopes])
    _, cov = to_orders(lines, np.asarray(promise.line_cov, dtype=np.float64),
                       float(promise.x_centre), float(promise.x_scale))
    products: ProductHistory = from_lines(model.product_codes, lines, cov,
                                          model.catalogue.weeks_missing)
    return History(products, tranche_key, 1, START)


def weeks_between(before: str, after: str) -> int:
    """Whole weeks from one tranche's date to another's (0 when not later; 1 if undated)."""
    first, last = timestamp_in_key(before), timestamp_in_key(after)
    if first is None or last is None:
        return 1 if before != after else 0
    days = (last - first).total_seconds() / 86400
    return max(int(round(days / 7)), 1) if days > 0 else 0


class Extended(NamedTuple):
    """The products the new model answers, and the history the run leaves."""

    catalogue: Catalogue
    history: History
    carried_cov: np.ndarray  # the carried products' line covariances, in orders placed


def extend(estimator: PooledLinearRegressor, fitted: ProductLinearModel,
           live: Optional[LoadedModel], start: Start, tranche_key: str, max_weeks: int
           ) -> Extended:
    """Carry forward the products missing this week (with a history, as its prior leaves
    them; without, the live model's lines), drop those missing too long, and leave the
    history: this week's lines, then the carried ones."""
    if start.history is not None:
        transition = estimator.transition_ or start.history.transition
        before = _carried(estimator, start.history.products, transition)
        previous: Optional[ProductLinearModel] = ProductLinearModel(
            before.codes, before.mean[:, 0], before.mean[:, 1],
            CatalogueState(before.weeks_unseen, *_dropped(live)),
        )
        seen_at = estimator.history_at_
    else:
        transition, previous = START, live.model if live else None
        before = _as_history(estimator, previous)
        seen_at = before.codes.find_many(fitted.product_codes)
    catalogue = carry_forward(fitted, previous, max_weeks)
    products = advance(estimator.fitted_history(), before, seen_at, max_weeks)
    # The same products in the same order: the served model's codes are the history's.
    assert products.codes == catalogue.model.product_codes
    products = products._replace(codes=catalogue.model.product_codes)
    weeks = start.history.weeks + 1 if start.history is not None else 1
    return Extended(catalogue, History(products, tranche_key, weeks, transition),
                    before.cov[catalogue.carried_from])


def _carried(estimator: PooledLinearRegressor, history: ProductHistory,
             transition: Transition) -> ProductHistory:
    """The history with the lines of the products unseen this week as their prior leaves
    them (those seen are learned from their rows: their old lines stay, unused)."""
    unseen = np.ones(len(history.codes), dtype=bool)
    unseen[estimator.history_at_[estimator.history_at_ >= 0]] = False
    at = np.flatnonzero(unseen)
    lines, cov = history.mean.copy(), history.cov.copy()
    lines[at], cov[at] = carried(estimator.week_, history.mean[at], history.cov[at], transition)
    return history._replace(mean=lines, cov=cov)


def _dropped(live: Optional[LoadedModel]) -> Tuple[ProductCodes, np.ndarray]:
    if live is None:
        return ProductCodes.from_strings(()), np.zeros(0, np.int16)
    return live.model.catalogue.dropped, live.model.catalogue.weeks_dropped


def _as_history(estimator: PooledLinearRegressor, model: Optional[ProductLinearModel]
                ) -> ProductHistory:
    """A model's lines as a history (this week's catalogue prior as their uncertainty)."""
    if model is None:
        return empty()
    prior = estimator.prior_.cov
    terms = np.tile([prior[0, 0], prior[0, 1], prior[1, 1]], (len(model), 1))
    lines = np.column_stack([model.intercepts, model.slopes])
    _, cov = to_orders(lines, terms, estimator.x_centre_, estimator.x_scale_)
    return from_lines(model.product_codes, lines, cov, model.catalogue.weeks_missing)
