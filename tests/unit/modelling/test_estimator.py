"""The pooled regressor: scikit-learn's API, partial pooling, and the accuracy targets."""
from typing import Optional

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.evaluation import split_by_product
from pipeline.generate_dataset import best_estimate, generate_tranche
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT


def mae_ratio_to_best(
    rows: int, skus: int, seed: int, zipf: Optional[float] = None, prior_scale: float = 1.0
) -> float:
    """Return the held-out MAE over that of the generator's true function on the same rows."""
    tranche = generate_tranche(rows, skus, seed, zipf)
    split = split_by_product(tranche.data, seed=seed)
    model = PooledLinearRegressor(prior_scale).fit(split.train[[PRODUCT, ORDERS]],
                                                   split.train[HOURS])
    actual = split.test[HOURS].to_numpy()
    served = model.served_model().predict(
        split.test[PRODUCT].tolist(), split.test[ORDERS].to_numpy()
    )
    best = np.abs(actual - best_estimate(tranche.products, split.test)).mean()
    return float(np.abs(actual - served).mean() / best)


@pytest.mark.parametrize("seed", range(10))
def test_mae_is_within_3_percent_of_the_truth_on_1000_rows_of_5_products(seed: int) -> None:
    assert mae_ratio_to_best(1000, 5, seed) <= 1.03


@pytest.mark.parametrize("seed", [1, 2])
def test_mae_is_within_8_percent_of_the_truth_on_a_zipf_catalogue_of_5000_products(
    seed: int,
) -> None:
    assert mae_ratio_to_best(100_000, 5000, seed, zipf=1.1) <= 1.08


def test_mae_is_within_2_percent_of_the_truth_on_1m_rows_of_10000_products() -> None:
    assert mae_ratio_to_best(1_000_000, 10_000, seed=3, zipf=1.1) <= 1.02


def test_a_prior_fitted_on_a_random_few_of_the_products_serves_as_well_as_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every = mae_ratio_to_best(200_000, 20_000, 6, zipf=1.1)
    monkeypatch.setattr("pipeline.modelling.pooling.MAX_PRIOR_PRODUCTS", 1000)
    few = mae_ratio_to_best(200_000, 20_000, 6, zipf=1.1)
    assert few != every and abs(few - every) <= 0.002 * every


def test_pooling_beats_lines_fitted_product_by_product_on_a_long_tailed_catalogue() -> None:
    pooled = mae_ratio_to_best(100_000, 5000, 4, zipf=1.1)
    alone = mae_ratio_to_best(100_000, 5000, 4, zipf=1.1, prior_scale=float("inf"))
    assert pooled < alone


def test_a_product_with_one_row_gets_an_estimate_pulled_toward_the_catalogue_line() -> None:
    data = generate_tranche(5000, 20, seed=5).data
    one = pd.DataFrame({HOURS: [30.0], ORDERS: [100], PRODUCT: ["RARE"]})
    X = pd.concat([data, one], ignore_index=True)
    model = PooledLinearRegressor().fit(X[[PRODUCT, ORDERS]], X[HOURS])
    at_100 = model.predict(pd.DataFrame({PRODUCT: ["RARE"], ORDERS: [100]}))[0]
    catalogue = model.catalogue_intercept_ + model.catalogue_slope_ * 100
    assert catalogue < at_100 < 30.0  # between the catalogue line and its one row
    codes = list(model.product_codes_)
    assert model.slope_sd_[codes.index("RARE")] > 5 * model.slope_sd_[codes.index("SKU001")]


def test_each_well_sampled_product_keeps_its_own_line() -> None:
    tranche = generate_tranche(40_000, 4, seed=5)
    model = PooledLinearRegressor().fit(tranche.data[[PRODUCT, ORDERS]], tranche.data[HOURS])
    truth = tranche.products.set_index(PRODUCT)
    for code, intercept, slope in zip(model.product_codes_, model.intercepts_, model.slopes_):
        assert intercept == pytest.approx(truth.loc[code, "base_hours"], abs=0.15)
        assert slope == pytest.approx(truth.loc[code, "hours_per_order"], abs=0.003)
    assert model.noise_sd_ == pytest.approx(tranche.noise_sd, rel=0.1)


def test_unseen_products_get_the_catalogue_line_and_estimates_are_floored_at_zero() -> None:
    data = generate_tranche(2000, 5, seed=6).data
    model = PooledLinearRegressor().fit(data[[PRODUCT, ORDERS]], data[HOURS])
    X = pd.DataFrame({PRODUCT: ["NEW", "NEW"], ORDERS: [100, 0]})
    expected = model.catalogue_intercept_ + model.catalogue_slope_ * 100
    assert model.predict(X)[0] == pytest.approx(expected)
    model.catalogue_intercept_ = -1.0
    assert model.predict(X)[1] == 0.0


def test_it_follows_the_estimator_api_so_model_selection_tools_tune_it() -> None:
    data = generate_tranche(3000, 30, seed=7, zipf=1.1).data
    X, y = data[[PRODUCT, ORDERS]], data[HOURS]
    model = PooledLinearRegressor()
    assert model.get_params() == {"prior_scale": 1.0, "censored_at_zero": True}
    assert clone(model.set_params(prior_scale=0.5)).prior_scale == 0.5
    folds = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(PooledLinearRegressor(), X, y, cv=folds, scoring="r2")
    assert (scores > 0.9).all()
    search = GridSearchCV(
        PooledLinearRegressor(), {"prior_scale": [0.0, 1.0]}, cv=folds,
        scoring="neg_mean_absolute_error",
    ).fit(X, y)
    assert search.best_params_ == {"prior_scale": 1.0}  # one line for all is worse


def test_fit_refuses_non_finite_values_and_a_frame_without_the_columns() -> None:
    X = pd.DataFrame({PRODUCT: ["A", "A"], ORDERS: [1.0, np.inf]})
    with pytest.raises(ValueError, match="finite"):
        PooledLinearRegressor().fit(X, [1.0, 2.0])
    with pytest.raises(ValueError, match="columns"):
        PooledLinearRegressor().fit(pd.DataFrame({"x": [1]}), [1.0])


def test_codes_held_as_categories_fit_the_model_held_as_text() -> None:
    data = generate_tranche(5000, 200, seed=6, zipf=1.1).data
    as_text = PooledLinearRegressor().fit(data[[PRODUCT, ORDERS]], data[HOURS])
    # Categories in no particular order, one of them without rows: neither is a product.
    codes = pd.Categorical(data[PRODUCT], categories=["ZZZ", *sorted(set(data[PRODUCT]))[::-1]])
    categorical = data.assign(**{PRODUCT: codes})
    as_categories = PooledLinearRegressor().fit(categorical[[PRODUCT, ORDERS]], data[HOURS])
    assert list(as_categories.product_codes_) == list(as_text.product_codes_)
    np.testing.assert_allclose(as_categories.slopes_, as_text.slopes_)
    np.testing.assert_allclose(as_categories.predict(categorical), as_text.predict(data))


def test_rows_are_found_alike_whether_their_codes_are_text_or_categories_in_any_order() -> None:
    data = generate_tranche(3000, 30, seed=4).data
    texts = data[[PRODUCT, ORDERS]]
    shuffled = texts.assign(**{PRODUCT: texts[PRODUCT].astype(
        pd.CategoricalDtype(sorted(set(texts[PRODUCT]), reverse=True)))})
    for X in (texts, shuffled):
        model = PooledLinearRegressor().fit(X, data[HOURS])
        assert model.product_codes_.tolist() == sorted(set(texts[PRODUCT]))
        assert model.predict(X).tolist() == model.predict(texts).tolist()
        assert (model.product_index(X[PRODUCT]) == model.product_index(texts[PRODUCT])).all()
