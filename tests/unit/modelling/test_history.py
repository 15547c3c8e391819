"""Learning from every week, at a small size: the three worlds, forgetting, and windup."""
from functools import lru_cache
from typing import Dict, Optional, Tuple

import numpy as np
import pytest

from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.generate_dataset import best_estimate, generate_tranche
from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.evaluation import split_by_product
from pipeline.codes.product_codes import ProductCodes
from pipeline.modelling.history import (
    START,
    History,
    Transition,
    Week,
    advance,
    carried,
    carried_prior,
    empty,
    from_lines,
    to_orders,
)
from pipeline.modelling.pooling import Prior, grouped_sums, marginals

CODES, ROWS, ZIPF = 600, 12_000, 1.1


@lru_cache(maxsize=None)
def weeks(world: str, count: int, change_week: int) -> Tuple[PooledLinearRegressor, ...]:
    """Fit `count` weeks in a row, each from the history the week before left."""
    fits = []
    history: Optional[History] = None
    for week in range(1, count + 1):
        tranche = generate_tranche(ROWS, CODES, seed=week, zipf=ZIPF, world=world, week=week,
                                   change_week=change_week)
        split = split_by_product(tranche.data)
        fit = PooledLinearRegressor().fit(split.train[[PRODUCT, ORDERS]], split.train[HOURS],
                                          history=history)
        before = empty()
        if history is not None:
            lines, cov = carried(fit.week_, history.products.mean, history.products.cov,
                                 fit.transition_ or START)
            before = history.products._replace(mean=lines, cov=cov)
        products = advance(fit.fitted_history(), before, fit.history_at_)
        history = History(products, f"week {week}", week, fit.transition_ or START)
        fits.append(fit)
    return tuple(fits)


def rare_error(fit: PooledLinearRegressor, world: str, week: int, change_week: int
               ) -> Dict[str, float]:
    """The estimate's error against the true line, on the next week's orders, for products
    with one or two rows in this week's training rows: this fit's and this week alone's."""
    nxt = generate_tranche(ROWS, CODES, seed=week + 1, zipf=ZIPF, world=world, week=week + 1,
                           change_week=change_week)
    rows = nxt.data[fit.product_index(nxt.data[PRODUCT]) >= 0]
    rare = np.isin(fit.product_index(rows[PRODUCT]), np.flatnonzero(fit.rows_ <= 2))
    rows = rows[rare]
    truth = best_estimate(nxt.products, rows)
    return {name: float(np.abs(model.predict(rows) - truth).mean())
            for name, model in (("history", fit), ("alone", fit.newest_only()))}


def test_with_history_rare_products_are_estimated_far_better_than_from_one_week() -> None:
    last = weeks("none", 5, 99)[-1]
    error = rare_error(last, "none", 5, 99)
    assert error["history"] < 0.6 * error["alone"]
    assert last.transition_ is not None and 0.5 < last.transition_.keep < 1.0


def test_a_warehouse_wide_slowdown_is_absorbed_in_the_week_it_shows() -> None:
    changed = weeks("warehouse", 4, 4)[-1]
    assert changed.transition_ is not None
    assert changed.transition_.scale[1] == pytest.approx(1.25, abs=0.05)  # every rate x1.25
    error = rare_error(changed, "warehouse", 4, 4)
    assert error["history"] < 0.6 * error["alone"]


def test_a_product_whose_rows_break_with_its_past_follows_them_at_once() -> None:
    changed = weeks("tenth", 4, 4)[-1]
    products = generate_tranche(10, CODES, world="tenth", week=4, change_week=4).products
    before = generate_tranche(10, CODES, world="tenth", week=3, change_week=4).products
    slowed = (products["hours_per_order"] / before["hours_per_order"]).to_numpy() > 1.5
    codes = changed.product_codes_.tolist()
    at = products.set_index(PRODUCT).index.get_indexer(codes)
    moved = slowed[at] & (changed.rows_ >= 10)
    assert moved.sum() >= 5
    assert np.median(changed.jumped_[moved]) > 0.9
    assert np.median(changed.jumped_[~slowed[at] & (changed.rows_ >= 10)]) < 0.05
    rate = products["hours_per_order"].to_numpy()[at]
    assert np.abs(changed.slopes_[moved] - rate[moved]).max() < 0.1 * rate[moved].min()


CATALOGUE = Prior(np.array([5.0, 1.5]), np.array([[1.0, 0.2], [0.2, 0.5]]), 1.0)
WEEK = Week(CATALOGUE, 50.0, 20.0, 1)


def test_an_unseen_product_grows_less_certain_each_week_until_it_is_a_new_one() -> None:
    product = from_lines(ProductCodes.from_strings(["A"]), np.array([[1.0, 0.2]]),
                         np.array([[1e-3, 0.0, 1e-5]]), np.zeros(1))
    keep = Transition((0.0, 0.0), (1.0, 1.0), 0.9, 0.02)
    covariances, means = [], []
    for _ in range(200):
        mean, cov = carried_prior(WEEK, product.mean, product.cov, keep)  # standardised
        covariances.append(cov[:, :, 0])
        means.append(mean[:, 0])
        lines, cov = carried(WEEK, product.mean, product.cov, keep)  # in orders, a week on
        product = product._replace(mean=lines, cov=cov)
    growing = [np.linalg.eigvalsh(later - earlier).min()
               for earlier, later in zip(covariances, covariances[1:])]
    assert min(growing) > -1e-12  # each week's covariance contains the week before's
    assert means[-1] == pytest.approx(CATALOGUE.mean, abs=1e-6)
    assert covariances[-1] == pytest.approx(CATALOGUE.cov, rel=1e-5)


def test_a_product_seen_every_week_never_becomes_certain() -> None:
    rng = np.random.default_rng(3)
    keep = Transition((0.0, 0.0), (1.0, 1.0), 0.9, 0.02)
    line, cov = np.array([[0.0, 0.1]]), np.array([[1.0, 0.0, 0.01]])
    variances = []
    for _ in range(60):
        u = rng.normal(size=50)
        sums = grouped_sums(np.zeros(50, np.int64), u, 5.0 + 1.5 * u + rng.normal(size=50), 1)
        _, post = marginals(sums, *carried_prior(WEEK, line, cov, keep), CATALOGUE.noise_var)
        variances.append(float(post.cov[0, 2]))  # var(slope), standardised
        line, cov = to_orders(post.mean, post.cov, WEEK.centre, WEEK.scale)
    assert variances[30] == pytest.approx(variances[59], rel=0.05)  # steady, not shrinking
    assert variances[59] > 3 * 1.0 / (50 * 60)  # what sixty weeks pooled as one would give
