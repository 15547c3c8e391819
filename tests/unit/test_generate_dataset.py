from datetime import datetime

import numpy as np
import pytest

from pipeline import generate_dataset
from pipeline.generate_dataset import generate_tranche, product_codes, true_hours
from pipeline.store import KeyExistsError, LocalStore
from pipeline.tranche import COLUMNS, DATASETS_PREFIX, HOURS, ORDERS, PRODUCT


def test_generated_tranche_has_the_real_columns_and_is_never_negative() -> None:
    tranche = generate_tranche(rows=5000, skus=20, seed=1)
    assert tuple(tranche.data.columns) == COLUMNS
    assert len(tranche.data) == 5000
    assert tranche.data[HOURS].min() >= 0
    assert tranche.data[ORDERS].min() >= 0
    assert set(tranche.data[PRODUCT]) <= set(product_codes(20))


def test_generated_hours_grow_with_orders_around_the_true_function_with_known_noise() -> None:
    tranche = generate_tranche(rows=20000, skus=3, seed=2)
    residual = tranche.data[HOURS].to_numpy() - true_hours(tranche.products, tranche.data)
    assert abs(residual.mean()) < 0.03
    assert residual.std() == pytest.approx(tranche.noise_sd, rel=0.05)
    assert (tranche.products["hours_per_order"] > 0).all()
    for _, rows in tranche.data.groupby(PRODUCT):
        assert np.corrcoef(rows[ORDERS], rows[HOURS])[0, 1] > 0.5


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
