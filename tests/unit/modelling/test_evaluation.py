"""Judging a model: the split, held-out metrics, logic checks within noise, the live model."""
from typing import Tuple

import numpy as np
import pandas as pd
import pytest

from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.evaluation import (
    check_model_logic,
    compare_with_live,
    evaluate,
    mae_regression,
    split_by_product,
)
from pipeline.generate_dataset import generate_tranche
from pipeline.artifact.model import ProductLinearModel
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT


def fitted(data: pd.DataFrame) -> PooledLinearRegressor:
    return PooledLinearRegressor().fit(data[[PRODUCT, ORDERS]], data[HOURS])


def extent(data: pd.DataFrame) -> Tuple[float, float]:
    """The tranche's longest queue and longest dispatch."""
    return float(data[ORDERS].max()), float(data[HOURS].max())


def test_every_product_keeps_training_rows_and_most_get_held_out_rows() -> None:
    data = generate_tranche(1000, 50, seed=3).data
    split = split_by_product(data)
    assert len(split.train) + len(split.test) == len(data)
    assert set(split.train[PRODUCT]) == set(data[PRODUCT])
    assert set(split.test[PRODUCT]) == set(data[PRODUCT])
    assert 0.15 < len(split.test) / len(data) < 0.25


def test_evaluate_reports_r2_and_mae_of_served_estimates_on_rows_of_known_products() -> None:
    model = ProductLinearModel(("A",), (1.0,), (1.0,))
    test = pd.DataFrame({HOURS: [2.0, 4.0, 9.0], ORDERS: [1, 2, 3], PRODUCT: ["A", "A", "Z"]})
    metrics = evaluate(model, test)
    assert metrics.rows == 2
    assert metrics.mae == pytest.approx(0.5)
    assert metrics.r2 == pytest.approx(0.5)


@pytest.mark.parametrize(
    "intercepts, slopes, complaint",
    [
        ((0.1, 20.0), (0.12, -0.05), "do not rise with orders placed for 1 product(s): B"),
        ((0.1, -80.0), (0.12, 0.1), "zero for every queue"),
        ((0.1, 0.1), (0.12, 5.0), "exceed"),
    ],
)
def test_logic_checks_reject_a_model_that_behaves_absurdly(
    intercepts: Tuple[float, float], slopes: Tuple[float, float], complaint: str
) -> None:
    data = generate_tranche(400, 2, seed=1).data.replace({"SKU001": "A", "SKU002": "B"})
    model = ProductLinearModel(("A", "B"), intercepts, slopes)
    problems = check_model_logic(model, *extent(data))
    assert len(problems) == 1 and complaint in problems[0]


def test_a_line_that_dips_below_zero_at_an_empty_queue_is_no_defect() -> None:
    data = generate_tranche(400, 1, seed=1).data
    model = ProductLinearModel(("SKU001",), (-0.4,), (0.12,))
    assert check_model_logic(model, *extent(data)) == []


def test_a_slightly_falling_slope_that_the_noise_allows_is_no_defect() -> None:
    data = generate_tranche(400, 2, seed=1).data
    model = ProductLinearModel(("SKU001", "SKU002"), (0.1, 5.0), (0.12, -0.001))
    assert check_model_logic(model, *extent(data), slope_sd=np.array([0.001, 0.01])) == []
    assert check_model_logic(model, *extent(data)) != []  # with no noise allowed it would fail


@pytest.mark.parametrize("seed", range(20))
def test_logic_checks_pass_every_pooled_model_of_a_long_tailed_real_shaped_catalogue(
    seed: int,
) -> None:
    data = generate_tranche(20_000, 2000, seed=seed, zipf=1.1).data
    model = fitted(data)
    assert check_model_logic(model.served_model(), *extent(data), model.slope_sd_) == []


def test_logic_checks_reject_a_pooled_model_of_a_product_whose_hours_fall_with_orders() -> None:
    data = generate_tranche(2000, 5, seed=7).data
    falling = data[PRODUCT] == "SKU003"
    data.loc[falling, HOURS] = (40 - data.loc[falling, HOURS]).clip(lower=0)
    model = fitted(data)
    problems = check_model_logic(model.served_model(), *extent(data), model.slope_sd_)
    assert problems and "do not rise" in problems[0] and "SKU003" in problems[0]


def test_live_and_new_models_are_scored_on_the_same_rows_and_a_worse_one_is_named() -> None:
    data = generate_tranche(2000, 5, seed=8).data
    split = split_by_product(data)
    good = fitted(split.train).served_model()
    worse = ProductLinearModel(good.product_codes, good.intercepts,
                               tuple(s * 1.3 for s in good.slopes))
    comparison = compare_with_live(worse, good, "v1", split.test)
    assert comparison.rows == len(split.test)
    assert comparison.new_mae is not None and comparison.live_mae is not None
    assert comparison.new_mae > comparison.live_mae * 1.05
    reason = mae_regression(comparison, 0.05)
    assert reason is not None and "v1" in reason and f"{comparison.new_mae:.4f}" in reason
    assert mae_regression(compare_with_live(good, worse, "v1", split.test), 0.05) is None


def test_the_comparison_uses_only_rows_both_models_can_answer() -> None:
    test = pd.DataFrame({HOURS: [1.0, 2.0, 3.0], ORDERS: [1, 2, 3], PRODUCT: ["A", "B", "C"]})
    new = ProductLinearModel(("A", "B"), (0.0, 0.0), (1.0, 1.0))
    live = ProductLinearModel(("B", "C"), (0.0, 0.0), (1.0, 1.0))
    assert compare_with_live(new, live, "v0", test).rows == 1
    none = compare_with_live(new, ProductLinearModel(("Z",), (0.0,), (1.0,)), "v0", test)
    assert none.section() == {"live_version": "v0", "rows": 0}


def test_the_vectorised_estimates_equal_what_the_service_answers() -> None:
    from pipeline.modelling.evaluation import served_estimates

    model = ProductLinearModel(("A", "B"), (-1.0, 2.0), (0.1, 0.05))
    rows = pd.DataFrame({PRODUCT: ["B", "A", "A"], ORDERS: [10.0, 5.0, 30.0]})
    assert served_estimates(model, rows).tolist() == [
        model.predict_one("B", 10.0), model.predict_one("A", 5.0), model.predict_one("A", 30.0)
    ]
    with pytest.raises(KeyError):
        served_estimates(model, pd.DataFrame({PRODUCT: ["Z"], ORDERS: [1.0]}))


def test_each_product_holds_out_exactly_a_fifth_of_its_rows_in_file_order() -> None:
    data = generate_tranche(20_000, 500, seed=4, zipf=1.1).data
    data["row"] = np.arange(len(data))
    split = split_by_product(data)
    rows = data[PRODUCT].value_counts()
    held = split.test[PRODUCT].value_counts().reindex(rows.index, fill_value=0)
    assert (held == rows // 5).all()  # every product of 5+ rows tested, all fitted
    assert set(split.train[PRODUCT]) == set(data[PRODUCT])
    for part in split:  # in the file's order
        assert part["row"].is_monotonic_increasing
    assert sorted([*split.train["row"], *split.test["row"]]) == list(range(len(data)))
    again = split_by_product(data.astype({PRODUCT: "category"}))
    pd.testing.assert_frame_equal(again.test.astype({PRODUCT: str}), split.test)


def test_a_catalogue_of_over_65536_products_is_split_as_a_small_one_is() -> None:
    # Numbered past 16 bits, the rows are sorted by product in two radix passes.
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 70_000, 400_000)
    data = pd.DataFrame({PRODUCT: [f"P{c:05d}" for c in codes], ORDERS: 1.0, HOURS: 1.0})
    data["row"] = np.arange(len(data))
    split = split_by_product(data)
    rows = data[PRODUCT].value_counts()
    held = split.test[PRODUCT].value_counts().reindex(rows.index, fill_value=0)
    assert len(rows) > 2**16 and (held == rows // 5).all()
    for part in split:
        assert part["row"].is_monotonic_increasing
    # Each product's held-out rows are evenly spaced among its own rows.
    order = data.groupby(PRODUCT, sort=False)["row"].rank(method="first").astype(int) - 1
    held_ranks = order[split.test["row"].to_numpy()].to_numpy()
    held_codes = split.test[PRODUCT].to_numpy()
    for code in held_codes[:200]:
        ranks = np.sort(held_ranks[held_codes == code])
        assert (np.diff(ranks) == 5).all()
