"""Week after week: the live model is the champion, products are carried, drift is named."""
from datetime import datetime, timedelta
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipeline import generate_dataset, train_model
from pipeline.modelling.estimator import PooledLinearRegressor
from pipeline.modelling.evaluation import split_by_product
from pipeline.registry.published import LoadedModel, load_newest_model, published_versions
from pipeline.service.app import API_PATH, BATCH_PATH, create_app
from pipeline.registry.store import LocalStore
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from tests.conftest import put_tranche

FIRST_WEEK = datetime(2021, 7, 9, 23)


def week(n: int) -> datetime:
    return FIRST_WEEK + timedelta(weeks=n)


def drop_week(store: LocalStore, n: int, skus: int = 5, without: Optional[List[str]] = None,
              rows: int = 2000) -> None:
    data = generate_dataset.generate_tranche(rows, skus, seed=n).data
    if without:
        data = data[~data[PRODUCT].isin(without)]
    put_tranche(store, data, week(n))


def test_the_second_weeks_model_records_how_the_live_one_did_on_the_new_week(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    drop_week(store, 0)
    first = train_model.main(store)
    drop_week(store, 1)
    second = train_model.main(store)
    comparison = load_newest_model(store).metadata.model_extra["comparison"]  # type: ignore[index]
    assert load_newest_model(store).metadata.model_version == second
    assert comparison["live_version"] == first
    assert set(comparison) == {"live_version", "live_mae", "live_r2", "new_mae", "new_r2", "rows",
                               "live_promise_coverage", "new_promise_coverage"}
    assert comparison["rows"] == load_newest_model(store).metadata.metrics["test_rows"]
    assert 0.5 < comparison["live_mae"] < 1.0 and 0.5 < comparison["new_mae"] < 1.0
    # 398 rows: a share of 0.9 has a sampling sd of 1.5 points.
    assert 0.84 < comparison["live_promise_coverage"] < 0.96
    assert 0.84 < comparison["new_promise_coverage"] < 0.96
    assert f"Champion {first} on this week's" in caplog.text
    assert f"Promises at 0.9 on the same {comparison['rows']} held-out rows: champion {first}'s" \
        in caplog.text


def test_a_worse_challenger_is_refused_naming_both_maes_and_the_live_model_stays(
    store: LocalStore,
) -> None:
    drop_week(store, 0)
    first = train_model.main(store)
    drop_week(store, 1)
    one_line_for_all = PooledLinearRegressor(prior_scale=0.0)
    with pytest.raises(train_model.TrainingRefused) as refused:
        train_model.main(store, estimator=one_line_for_all, history="off")
    message = str(refused.value)
    assert "held-out MAE" in message and f"live model {first}'s" in message
    assert "nothing was published" in message and "--force" in message
    assert published_versions(store) == [first]


def test_force_publishes_a_worse_challenger_and_says_so(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    drop_week(store, 0)
    train_model.main(store)
    drop_week(store, 1)
    forced = train_model.main(store, estimator=PooledLinearRegressor(prior_scale=0.0),
                              force=True, history="off")
    assert published_versions(store)[0] == forced
    assert "publishing anyway, as --force asks" in caplog.text
    assert load_newest_model(store).metadata.thresholds["forced"] is True  # type: ignore[attr-defined]  # noqa: E501


def test_a_wider_tolerance_accepts_what_the_default_refuses(store: LocalStore) -> None:
    drop_week(store, 0)
    train_model.main(store)
    drop_week(store, 1)
    train_model.main(store, estimator=PooledLinearRegressor(prior_scale=0.0),
                     max_mae_regression=5.0, history="off")
    assert len(published_versions(store)) == 2


@pytest.mark.parametrize("seed", range(5))
def test_successive_good_weeks_of_a_long_tailed_catalogue_are_never_refused(
    store: LocalStore, seed: int
) -> None:
    for n in range(3):
        data = generate_dataset.generate_tranche(30_000, 3000, seed=10 * seed + n, zipf=1.1).data
        put_tranche(store, data, week(n))
        train_model.main(store)
    assert len(published_versions(store)) == 3


def test_without_history_a_missing_product_keeps_its_line_for_a_few_weeks_then_is_dropped(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    drop_week(store, 0)
    train_model.main(store, max_carry_weeks=2, history="off")
    first = load_newest_model(store)
    for n in (1, 2):
        drop_week(store, n, without=["SKU005"])
        train_model.main(store, max_carry_weeks=2, history="off")
        loaded = load_newest_model(store)
        catalogue = loaded.metadata.model_extra["catalogue"]  # type: ignore[index]
        assert catalogue["carried_products"] == 1
        codes = loaded.model.product_codes.tolist()
        assert dict(zip(codes, loaded.model.catalogue.weeks_missing.tolist()))["SKU005"] == n
        assert loaded.model.predict_one("SKU005", 90) == first.model.predict_one("SKU005", 90)
    assert "1 carried forward from the live model" in caplog.text
    drop_week(store, 3, without=["SKU005"])
    train_model.main(store, max_carry_weeks=2, history="off")
    dropped = load_newest_model(store)
    assert not dropped.model.knows("SKU005")
    assert dropped.model.catalogue.dropped.tolist() == ["SKU005"]
    assert dropped.metadata.model_extra["catalogue"]["dropped_products"] == 1  # type: ignore[index]  # noqa: E501
    assert "1 dropped after 2 week(s) missing" in caplog.text

    with TestClient(create_app(lambda: load_newest_model(store))) as client:
        gone = client.post(API_PATH, json={"product_code": "SKU005", "orders_placed": 9})
        never = client.post(API_PATH, json={"product_code": "SKU777", "orders_placed": 9})
    assert gone.status_code == 422 and never.status_code == 422
    assert "has been dropped" in gone.json()["detail"][0]["msg"]
    assert gone.json()["detail"][0]["type"] == "dropped_product_code"
    assert "never seen" in never.json()["detail"][0]["msg"]


def test_longer_queues_this_week_are_named_as_drift_in_the_log_and_metadata(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    drop_week(store, 0, rows=20_000)
    train_model.main(store)
    busier = generate_dataset.generate_tranche(20_000, 5, seed=1).data
    busier[ORDERS] = (busier[ORDERS] * 1.8).round()
    put_tranche(store, busier, week(1))
    train_model.main(store, max_mae_regression=5.0)  # last week's lines are not at issue here
    assert "drift in the tranche: orders_placed shifted: median" in caplog.text
    shifts = load_newest_model(store).metadata.model_extra["drift"]  # type: ignore[index]
    orders = next(s for s in shifts if s["statistic"] == ORDERS and s["product"] is None)
    assert orders["psi"] > 0.25


def test_weeks_over_a_large_catalogue_carry_drop_and_answer_products_as_documented(
    store: LocalStore,
) -> None:
    """50k products: week 2 misses a tenth and adds new ones; week 3 misses the same tenth
    again. With one week of carry, week 2 answers them (carried) and week 3 says dropped."""
    codes = [f"P{i:06d}" for i in range(55_000)]
    first, gone, new = codes[:50_000], codes[:5_000], codes[50_000:]

    def tranche(products: List[str], seed: int) -> pd.DataFrame:
        data = generate_dataset.generate_tranche(len(products) * 5, 55_000, seed=seed).data
        data[PRODUCT] = [products[i % len(products)] for i in range(len(data))]
        return data

    put_tranche(store, tranche(first, 1), week(0))
    train_model.main(store, max_carry_weeks=1)
    put_tranche(store, tranche(first[5_000:] + new, 2), week(1))
    train_model.main(store, max_carry_weeks=1, max_mae_regression=5.0)
    second = load_newest_model(store)
    catalogue = second.metadata.model_extra["catalogue"]  # type: ignore[index]
    assert catalogue["carried_products"] == 5_000 and catalogue["products"] == 55_000
    put_tranche(store, tranche(first[5_000:] + new, 3), week(2))
    train_model.main(store, max_carry_weeks=1, max_mae_regression=5.0)
    third = load_newest_model(store)
    assert third.metadata.model_extra["catalogue"]["dropped_products"] == 5_000  # type: ignore[index]  # noqa: E501

    def ask(loaded: LoadedModel, code: str) -> Tuple[int, str]:
        with TestClient(create_app(lambda: loaded)) as client:
            response = client.post(API_PATH, json={"product_code": code, "orders_placed": 9})
        body = response.json()
        return response.status_code, body["detail"][0]["type"] if "detail" in body else "ok"

    assert ask(second, gone[17]) == (200, "ok")  # carried for a week
    assert ask(second, new[3]) == (200, "ok")
    assert ask(third, gone[17]) == (422, "dropped_product_code")
    assert ask(third, new[3]) == (200, "ok") and ask(third, "P999999") == (
        422, "unknown_product_code"
    )


@pytest.mark.parametrize("noise", ["normal", "skewed", "growing"])
def test_good_weeks_of_every_noise_shape_are_published_with_both_promises_holding(
    store: LocalStore, noise: str
) -> None:
    coverages = []
    for n in range(3):
        data = generate_dataset.generate_tranche(5000, 20, seed=40 + n, noise=noise).data
        put_tranche(store, data, week(n))
        train_model.main(store)
        comparison = load_newest_model(store).metadata.model_extra["comparison"]  # type: ignore[index]  # noqa: E501
        if comparison:
            coverages += [comparison["live_promise_coverage"], comparison["new_promise_coverage"]]
    assert len(published_versions(store)) == 3
    # 1,000 held-out rows each: a share of 0.9 has a sampling sd of about 1 point.
    assert all(0.86 < c < 0.94 for c in coverages), coverages


def test_the_live_models_promise_coverage_is_the_share_within_what_the_service_promised(
    store: LocalStore,
) -> None:
    drop_week(store, 0)
    train_model.main(store)
    live = load_newest_model(store)
    data = generate_dataset.generate_tranche(2000, 5, seed=1).data
    put_tranche(store, data, week(1))
    train_model.main(store)
    comparison = load_newest_model(store).metadata.model_extra["comparison"]  # type: ignore[index]
    held_out = split_by_product(data).test  # the rows training held out, as it split them
    orders = [{"product_code": str(p), "orders_placed": int(x)}
              for p, x in zip(held_out[PRODUCT], held_out[ORDERS])]
    with TestClient(create_app(lambda: live)) as client:
        answer = client.post(BATCH_PATH, json={"orders": orders, "promise_probability": 0.9})
    promised = np.array(answer.json()["promises"])
    hours = held_out[HOURS].to_numpy()
    assert len(hours) == comparison["rows"]
    # The service rounds to 3 decimals: an order that near its promise may fall either side.
    close = np.abs(hours - promised) < 0.001
    within = (hours <= promised)[~close].sum()
    assert within <= comparison["live_promise_coverage"] * len(hours) <= within + close.sum()
