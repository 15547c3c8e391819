from pathlib import Path
from typing import Tuple

import joblib
import numpy as np
import pandas as pd
import pytest

from pipeline.generate_dataset import generate_tranche, true_hours
from pipeline.model import (
    ProductLinearModel,
    check_model_logic,
    evaluate,
    fit_per_product,
    split_by_product,
)
from pipeline.registry import serialise_model
from pipeline.tranche import HOURS, ORDERS, PRODUCT


def mae_ratio_to_best(rows: int, skus: int, seed: int) -> float:
    """Return the model's held-out MAE over the MAE of the generator's true function."""
    tranche = generate_tranche(rows, skus, seed)
    split = split_by_product(tranche.data, seed=seed)
    model = fit_per_product(split.train).model
    test = split.test[split.test[PRODUCT].map(model.knows)]
    actual = test[HOURS].to_numpy()
    predicted = model.predict(test[PRODUCT].tolist(), test[ORDERS].to_numpy())
    best = np.abs(actual - true_hours(tranche.products, test)).mean()
    return float(np.abs(actual - predicted).mean() / best)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_model_is_within_5_percent_of_the_best_mae_on_1000_rows_of_5_products(seed: int) -> None:
    assert mae_ratio_to_best(1000, 5, seed) < 1.05


def test_model_is_within_5_percent_of_the_best_mae_on_100000_rows_of_2000_products() -> None:
    assert mae_ratio_to_best(100_000, 2000, seed=11) < 1.05


def test_fit_recovers_each_products_own_line() -> None:
    tranche = generate_tranche(20_000, 4, seed=5)
    model = fit_per_product(tranche.data).model
    truth = tranche.products.set_index(PRODUCT)
    for code, intercept, slope in zip(model.product_codes, model.intercepts, model.slopes):
        assert intercept == pytest.approx(truth.loc[code, "base_hours"], abs=0.1)
        assert slope == pytest.approx(truth.loc[code, "hours_per_order"], abs=0.002)


def test_products_without_enough_rows_or_spread_are_left_unfitted_not_guessed() -> None:
    data = pd.DataFrame(
        {
            HOURS: [1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 9.0, 9.5],
            ORDERS: [0, 10, 20, 7, 7, 7, 1, 2],
            PRODUCT: ["A", "A", "A", "FLAT", "FLAT", "FLAT", "TWO", "TWO"],
        }
    )
    fit = fit_per_product(data)
    assert fit.model.product_codes == ("A",)
    assert sorted(fit.unfitted_products) == ["FLAT", "TWO"]
    assert fit.model.predict_one("A", 30) == pytest.approx(4.0)


def test_every_product_keeps_training_rows_and_most_get_held_out_rows() -> None:
    data = generate_tranche(1000, 50, seed=3).data
    split = split_by_product(data)
    assert len(split.train) + len(split.test) == len(data)
    assert set(split.train[PRODUCT]) == set(data[PRODUCT])
    assert set(split.test[PRODUCT]) == set(data[PRODUCT])
    assert 0.15 < len(split.test) / len(data) < 0.25


def test_estimates_are_never_negative_and_unknown_products_raise() -> None:
    model = ProductLinearModel(("A",), (-5.0,), (0.1,))
    assert model.predict_one("A", 0) == 0.0
    assert list(model.predict(["A", "A"], np.array([0, 100]))) == [0.0, 5.0]
    with pytest.raises(KeyError):
        model.predict_one("B", 1)


def test_artifact_is_plain_data_that_round_trips_without_any_model_library(tmp_path: Path) -> None:
    model = fit_per_product(generate_tranche(500, 3, seed=1).data).model
    path = tmp_path / "model.joblib"
    path.write_bytes(serialise_model(model))
    artifact = joblib.load(path)
    assert set(map(type, artifact["intercepts"])) == {float}
    assert ProductLinearModel.from_artifact(artifact) == model


def test_loading_an_artifact_of_another_format_says_which_format_it_is() -> None:
    with pytest.raises(ValueError, match="'something-else/2'"):
        ProductLinearModel.from_artifact({"format": "something-else/2"})


def test_evaluate_reports_r2_and_mae_on_rows_of_known_products() -> None:
    model = ProductLinearModel(("A",), (1.0,), (1.0,))
    test = pd.DataFrame({HOURS: [2.0, 4.0, 9.0], ORDERS: [1, 2, 3], PRODUCT: ["A", "A", "Z"]})
    metrics = evaluate(model, test)
    assert metrics.rows == 2
    assert metrics.mae == pytest.approx(0.5)
    assert metrics.r2 == pytest.approx(0.5)


@pytest.mark.parametrize(
    "intercepts, slopes, complaint",
    [
        ((2.0, 2.0), (0.05, -0.01), "do not rise with orders placed for 1 product(s): B"),
        ((2.0, -3.0), (0.05, 0.01), "negative"),
        ((2.0, 2.0), (0.05, 5.0), "exceed"),
    ],
)
def test_logic_checks_reject_a_model_that_behaves_absurdly(
    intercepts: Tuple[float, float], slopes: Tuple[float, float], complaint: str
) -> None:
    data = generate_tranche(200, 2, seed=1).data.replace({"SKU001": "A", "SKU002": "B"})
    model = ProductLinearModel(("A", "B"), intercepts, slopes)
    problems = check_model_logic(model, data)
    assert len(problems) == 1 and complaint in problems[0]


def test_logic_checks_pass_a_model_fitted_to_well_behaved_data() -> None:
    data = generate_tranche(1000, 5, seed=1).data
    assert check_model_logic(fit_per_product(data).model, data) == []
