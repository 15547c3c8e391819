"""The weekly run on real-shaped tranches: no good model refused, each quirk handled."""
from datetime import datetime
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

from pipeline import generate_dataset, train_model
from pipeline.modelling.evaluation import split_by_product
from pipeline.generate_dataset import best_estimate, generate_tranche
from pipeline.registry.published import LoadedModel, load_newest_model
from pipeline.registry.store import LocalStore
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT

WEEK = datetime(2021, 7, 16, 23)


def held_out_mae_ratio(
    store: LocalStore, rows: int, skus: int, seed: int, zipf: float = 0.0
) -> Tuple[LoadedModel, float]:
    """Train through the stage; return the published model and its MAE over the truth's."""
    tranche = generate_tranche(rows, skus, seed, zipf or None)
    generate_dataset.main(store, rows, skus, WEEK, seed, zipf=zipf or None)
    train_model.main(store)
    loaded = load_newest_model(store)
    test = split_by_product(tranche.data).test  # the stage's own split of these rows
    actual = test[HOURS].to_numpy()
    served = loaded.model.predict(test[PRODUCT].tolist(), test[ORDERS].to_numpy())
    best = np.abs(actual - best_estimate(tranche.products, test)).mean()
    return loaded, float(np.abs(actual - served).mean() / best)


@pytest.mark.parametrize("seed", range(50))
def test_no_good_model_is_refused_and_each_is_within_3_percent_of_the_truth(
    tmp_path: Path, seed: int
) -> None:
    _, ratio = held_out_mae_ratio(LocalStore(f"{tmp_path}/s"), 1000, 5, seed)
    assert ratio <= 1.03


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_product_of_a_long_tailed_catalogue_is_answered_near_the_truth(
    store: LocalStore, seed: int
) -> None:
    loaded, ratio = held_out_mae_ratio(store, 100_000, 5000, seed, zipf=1.1)
    in_tranche = set(generate_tranche(100_000, 5000, seed, 1.1).data[PRODUCT])
    assert all(loaded.model.knows(code) for code in in_tranche)
    assert ratio <= 1.08
    pooled = loaded.metadata.model_extra["catalogue"]["pooled"]  # type: ignore[index]
    assert pooled > 1000  # products with one or two rows, answered all the same


def truth_at(code: str, orders: float, skus: int = 5) -> float:
    products = generate_tranche(1, skus).products.set_index(PRODUCT)
    base, rate = products.loc[code, ["base_hours", "hours_per_order"]].to_numpy(dtype=float)
    return float(base + rate * orders)


def test_padded_codes_are_one_product_and_its_estimate_is_the_clean_codes(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    generate_dataset.main(store, 2000, 5, WEEK, seed=1, quirks=["spaces"])
    train_model.main(store)
    model = load_newest_model(store).model
    assert model.product_codes.tolist() == ["SKU001", "SKU002", "SKU003", "SKU004", "SKU005"]
    assert model.predict_one("SKU002", 100) == pytest.approx(truth_at("SKU002", 100), abs=0.4)
    assert "trimmed spaces around the product code of" in caplog.text


def test_a_9999_hour_slip_is_dropped_and_reported_and_the_week_is_published(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    data = generate_tranche(1000, 5, seed=2).data
    data.loc[10, HOURS] = 9999.0
    code = str(data.loc[10, PRODUCT])
    store.put_new("datasets/time_to_dispatch_2021-07-16.csv",
                  generate_dataset.to_csv_bytes(data))
    version = train_model.main(store)
    loaded = load_newest_model(store)
    assert loaded.metadata.model_version == version
    assert loaded.metadata.dataset["outliers_dropped"] == 1
    assert loaded.model.predict_one(code, 100) == pytest.approx(truth_at(code, 100), abs=0.6)
    assert "dropped 1 gross outlier row(s)" in caplog.text and "9999 hours" in caplog.text


def test_crlf_line_endings_train_the_same_model_as_lf(tmp_path: Path) -> None:
    models = []
    for quirks in ([], ["crlf"]):
        store = LocalStore(f"{tmp_path}/{'-'.join(quirks) or 'lf'}")
        generate_dataset.main(store, 1000, 5, WEEK, seed=3, quirks=quirks)
        train_model.main(store)
        models.append(load_newest_model(store).model)
    assert models[0].product_codes == models[1].product_codes
    assert models[0].intercepts.tolist() == models[1].intercepts.tolist()
    assert models[0].slopes.tolist() == models[1].slopes.tolist()


def test_an_undated_export_is_named_in_a_warning_and_never_trained_on(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    key = generate_dataset.main(store, 1000, 5, WEEK, seed=4, quirks=["undated-export"])
    train_model.main(store)
    assert load_newest_model(store).metadata.dataset["key"] == key
    assert f"ignoring {store.location('datasets/orders_export.csv')}: its name carries no date" \
        in caplog.text


def test_a_compact_date_in_the_key_is_read_and_the_newest_week_wins(store: LocalStore) -> None:
    generate_dataset.main(store, 1000, 5, datetime(2021, 7, 9), seed=5)
    key = generate_dataset.main(store, 1000, 5, WEEK, seed=6, quirks=["compact-date"])
    assert key == "datasets/time_to_dispatch_20210716.csv"
    train_model.main(store)
    assert load_newest_model(store).metadata.dataset["key"] == key


def test_a_semicolon_delimited_drop_is_refused_naming_the_delimiter(store: LocalStore) -> None:
    generate_dataset.main(store, 1000, 5, WEEK, seed=7, quirks=["semicolon"])
    with pytest.raises(train_model.TrainingRefused, match="delimited by semicolons"):
        train_model.main(store)
    assert store.list_keys("models/") == []


def test_a_drop_with_every_quirk_but_the_delimiter_is_trained_and_answers_clean_codes(
    store: LocalStore,
) -> None:
    quirks = ["spaces", "outlier", "crlf", "undated-export", "compact-date"]
    generate_dataset.main(store, 1000, 5, WEEK, seed=8, quirks=quirks)
    train_model.main(store)
    model = load_newest_model(store).model
    for code in ("SKU001", "SKU005"):
        assert model.predict_one(code, 80) == pytest.approx(truth_at(code, 80), abs=0.6)
