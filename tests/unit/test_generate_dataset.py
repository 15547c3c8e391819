import io
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline import generate_dataset
from pipeline.generate_dataset import (
    OUTLIER_HOURS,
    UNDATED_EXPORT_KEY,
    generate_tranche,
    line_hours,
    product_codes,
    to_csv_bytes,
    true_quantile,
)
from pipeline.registry.store import KeyExistsError, LocalStore
from pipeline.data.tranche import COLUMNS, DATASETS_PREFIX, HOURS, ORDERS, PRODUCT


def test_generated_tranche_has_the_real_columns_and_is_never_negative() -> None:
    tranche = generate_tranche(rows=5000, skus=20, seed=1)
    assert tuple(tranche.data.columns) == COLUMNS
    assert len(tranche.data) == 5000
    assert tranche.data[HOURS].min() >= 0
    assert tranche.data[ORDERS].min() >= 0
    assert set(tranche.data[PRODUCT]) <= set(product_codes(20))


def test_generated_tranche_has_the_shape_measured_on_a_real_one() -> None:
    tranche = generate_tranche(rows=50_000, skus=20, seed=2)
    data, products = tranche.data, tranche.products
    assert products["base_hours"].between(0, 0.2).all()  # lines often cross zero once fitted
    assert products["hours_per_order"].between(0.07, 0.18).all()
    assert 0.02 < (data[HOURS] == 0).mean() < 0.04  # hours floored at zero: about 3% zeros
    assert data[ORDERS].between(0, 320).all()
    assert 45 <= data[ORDERS].median() <= 65 and 68 <= data[ORDERS].mean() <= 78
    away_from_floor = data[ORDERS] > 40
    residual = (data[HOURS] - line_hours(products, data))[away_from_floor]
    assert abs(residual.mean()) < 0.03
    assert residual.std() == pytest.approx(tranche.noise_sd, rel=0.05)
    for _, rows in data.groupby(PRODUCT):
        assert np.corrcoef(rows[ORDERS], rows[HOURS])[0, 1] > 0.5


def test_zipf_popularity_gives_a_long_tailed_catalogue() -> None:
    counts = generate_tranche(100_000, 5000, seed=1, zipf=1.1).data[PRODUCT].value_counts()
    assert counts.iloc[0] > 5000  # a few products have thousands of rows a week
    assert (counts <= 2).sum() > 1000  # many have one or two
    assert counts.median() < 10  # most have a handful


def test_successive_weeks_of_one_catalogue_share_the_products_lines() -> None:
    week1 = generate_tranche(100, 5, seed=1)
    week2 = generate_tranche(100, 5, seed=2)
    assert week1.products.equals(week2.products)
    assert not week1.data.equals(week2.data)


def test_each_quirk_of_real_drops_can_be_injected() -> None:
    clean = generate_tranche(1000, 5, seed=3).data
    quirky = generate_tranche(1000, 5, seed=3, quirks=["spaces", "outlier"]).data
    padded = quirky[PRODUCT] != quirky[PRODUCT].str.strip()
    assert 20 < padded.sum() < 100
    assert (quirky[PRODUCT].str.strip() == clean[PRODUCT]).all()
    assert (quirky[HOURS] == OUTLIER_HOURS).sum() == 1
    assert b"\r\n" in to_csv_bytes(clean, ["crlf"])
    assert to_csv_bytes(clean, ["semicolon"]).startswith(
        b"hours_to_dispatch;orders_placed;product_code"
    )
    with pytest.raises(ValueError, match="unknown quirk"):
        generate_tranche(10, 1, quirks=["typo"])


def test_main_writes_a_compact_dated_key_and_an_undated_export_when_asked(
    store: LocalStore,
) -> None:
    key = generate_dataset.main(
        store, rows=50, when=datetime(2021, 7, 16), quirks=["compact-date", "undated-export"]
    )
    assert key == "datasets/time_to_dispatch_20210716.csv"
    assert store.list_keys(DATASETS_PREFIX) == [UNDATED_EXPORT_KEY, key]


def test_generation_is_repeatable_with_a_seed_and_differs_without() -> None:
    a = generate_tranche(100, 5, seed=3).data
    assert a.equals(generate_tranche(100, 5, seed=3).data)
    assert not a.equals(generate_tranche(100, 5, seed=4).data)


def test_product_codes_sort_in_catalogue_order_for_thousands_of_products() -> None:
    codes = product_codes(2000)
    assert codes[0] == "SKU0001" and codes[-1] == "SKU2000"
    assert codes == sorted(codes)
    assert product_codes(5) == ["SKU001", "SKU002", "SKU003", "SKU004", "SKU005"]


def test_main_writes_a_dated_tranche_and_never_overwrites_one(store: LocalStore) -> None:
    when = datetime(2021, 7, 9, 23)
    key = generate_dataset.main(store, rows=50, skus=2, when=when)
    assert key == "datasets/time_to_dispatch_2021-07-09T23:00:00.csv"
    assert store.get_bytes(key).startswith(b"hours_to_dispatch,orders_placed,product_code\n")
    with pytest.raises(KeyExistsError):
        generate_dataset.main(store, rows=60, skus=2, when=when)
    assert len(store.get_bytes(key).splitlines()) == 51


def test_main_if_empty_adds_a_tranche_only_to_an_empty_store(store: LocalStore) -> None:
    assert generate_dataset.main(store, rows=10, if_empty=True) is not None
    assert generate_dataset.main(store, rows=10, if_empty=True) is None
    assert len(store.list_keys(DATASETS_PREFIX)) == 1


def test_normal_noise_draws_exactly_what_the_generator_drew_before_noise_shapes() -> None:
    # The draws before --noise existed: line plus rng.normal(0, 1, rows), in this order.
    tranche = generate_tranche(2000, 7, seed=9, noise="normal")
    rng = np.random.default_rng(9)
    rng.choice(7, size=2000, p=tranche.products["popularity"].to_numpy())
    rng.gamma(1.2, 61.0, 2000)
    line = line_hours(tranche.products, tranche.data)
    expected = np.clip(line + rng.normal(0.0, 1.0, 2000), 0.0, None).round(3)
    assert np.array_equal(tranche.data[HOURS].to_numpy(), expected)
    assert generate_tranche(2000, 7, seed=9).data.equals(tranche.data)


@pytest.mark.parametrize("noise", ["normal", "skewed", "growing"])
@pytest.mark.parametrize("probability", [0.5, 0.9, 0.95])
def test_each_noise_shape_has_the_true_quantiles_the_generator_reports(
    noise: str, probability: float
) -> None:
    tranche = generate_tranche(200_000, 10, seed=4, noise=noise)
    data = tranche.data
    within = data[HOURS] <= true_quantile(tranche.products, data, probability, noise) + 5e-4
    assert within.mean() == pytest.approx(probability, abs=0.004)
    busy = data[ORDERS] > data[ORDERS].quantile(0.8)
    assert within[busy].mean() == pytest.approx(probability, abs=0.01)


def test_skewed_noise_has_a_long_right_tail_and_growing_noise_grows_with_the_queue() -> None:
    def residuals(noise: str) -> pd.DataFrame:
        tranche = generate_tranche(100_000, 10, seed=5, noise=noise)
        away = tranche.data[tranche.data[ORDERS] > 40]
        return away.assign(r=away[HOURS] - line_hours(tranche.products, away))

    skewed = residuals("skewed")["r"]
    assert abs(skewed.mean()) < 0.02 and skewed.std() == pytest.approx(1.0, rel=0.05)
    assert float(stats.skew(skewed.to_numpy())) > 1.0
    assert skewed.quantile(0.95) - skewed.median() > 1.8
    growing = residuals("growing")
    quiet = growing[growing[ORDERS] < 60]["r"].std()
    busy = growing[growing[ORDERS] > 150]["r"].std()
    assert busy > 2 * quiet
    assert abs(float(stats.skew(residuals("normal")["r"].to_numpy()))) < 0.1


def test_an_unknown_noise_shape_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown noise 'lumpy'"):
        generate_tranche(10, 1, noise="lumpy")


def test_main_writes_a_tranche_with_the_noise_asked_for(store: LocalStore) -> None:
    key = generate_dataset.main(store, rows=200, seed=3, noise="skewed")
    assert key is not None
    expected = to_csv_bytes(generate_tranche(200, 5, seed=3, noise="skewed").data)
    assert store.get_bytes(key) == expected


@pytest.mark.parametrize("world, share, factor", [("warehouse", 1.0, 1.25), ("tenth", 0.1, 1.6)])
def test_a_world_changes_its_lines_from_the_change_week_on(
    world: str, share: float, factor: float
) -> None:
    before = generate_tranche(100, 2000, seed=1, world=world, week=6, change_week=7).products
    after = generate_tranche(100, 2000, seed=1, world=world, week=7, change_week=7).products
    unchanged = generate_tranche(100, 2000, seed=1).products
    pd.testing.assert_frame_equal(before, unchanged)
    ratio = after["hours_per_order"] / before["hours_per_order"]
    assert set(np.round(ratio, 9)) <= {1.0, factor}
    assert (ratio > 1).mean() == pytest.approx(share, abs=0.02)
    assert (after["base_hours"] == before["base_hours"]).all()


def test_main_writes_weeks_in_a_row_a_week_apart(store: LocalStore) -> None:
    generate_dataset.main(store, rows=300, skus=10, when=datetime(2026, 12, 4, 23), weeks=3,
                          world="warehouse", change_week=3)
    keys = store.list_keys(DATASETS_PREFIX)
    assert [k.rsplit("_", 1)[-1] for k in keys] == [
        "2026-11-20T23:00:00.csv", "2026-11-27T23:00:00.csv", "2026-12-04T23:00:00.csv"]
    frames = [pd.read_csv(io.BytesIO(store.get_bytes(k))) for k in keys]
    assert not frames[0].equals(frames[1])  # each week its own rows
