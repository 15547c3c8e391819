"""Models published before the catalogue change (list artifacts, codes in the metadata) load,
verify (signed and unsigned) and answer exactly as the code that published them did."""
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Dict, List

import pytest
from fastapi.testclient import TestClient

from pipeline import models, train_model
from pipeline.generate_dataset import generate_tranche
from pipeline.artifact.model import LIST_FORMAT
from pipeline.registry.published import load_model, load_newest_model, published_versions
from pipeline.service.app import API_PATH, create_app
from pipeline.registry.store import LocalStore
from tests.conftest import put_tranche

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "models_before_catalogue"
KEYS = {"unsigned": None, "signed": b"fixture-signing-key"}
ORDERS = (0, 1, 50, 112, 320, 5000)


def fixture_store(tmp_path: Path, name: str) -> LocalStore:
    shutil.copytree(FIXTURES / name, tmp_path / name)
    return LocalStore(str(tmp_path / name))


def answers(name: str) -> Dict[str, Dict[str, List[float]]]:
    loaded: Dict[str, Dict[str, List[float]]] = json.loads(
        (FIXTURES / name / "answers.json").read_text()
    )
    return loaded


@pytest.mark.parametrize("name", sorted(KEYS))
def test_every_old_model_verifies_and_answers_the_same(tmp_path: Path, name: str) -> None:
    store = fixture_store(tmp_path, name)
    expected = answers(name)
    assert sorted(expected) == sorted(published_versions(store))
    for version, by_product in expected.items():
        loaded = load_model(store, version, KEYS[name])
        assert loaded.metadata.artifact_format == LIST_FORMAT
        assert loaded.metadata.products() == len(by_product)
        for code, hours in by_product.items():
            assert [loaded.model.predict_one(code, x) for x in ORDERS] == hours


def test_the_service_answers_an_old_model_and_says_its_dropped_product_was_dropped(
    tmp_path: Path,
) -> None:
    store = fixture_store(tmp_path, "signed")
    newest = published_versions(store)[0]
    expected = answers("signed")[newest]
    app = create_app(lambda: load_newest_model(store, KEYS["signed"]))
    with TestClient(app) as client:
        for code, hours in expected.items():
            response = client.post(API_PATH, json={"product_code": code, "orders_placed": 112})
            assert response.json() == {
                "est_hours_to_dispatch": round(hours[ORDERS.index(112)], 3),
                "model_version": newest,
            }
        gone = client.post(API_PATH, json={"product_code": "SKU006", "orders_placed": 1})
        info = client.get("/api/v0.1/model").json()
    assert gone.status_code == 422
    assert gone.json()["detail"][0]["type"] == "dropped_product_code"
    assert info["products"] == len(expected)


def test_training_after_an_old_model_carries_its_listed_products_forward(
    tmp_path: Path,
) -> None:
    store = fixture_store(tmp_path, "unsigned")
    old = load_newest_model(store)  # SKU006 carried for 1 week, as its metadata lists
    week3 = generate_tranche(400, 6, seed=3).data
    put_tranche(store, week3[week3.product_code != "SKU006"], datetime(2026, 11, 20, 23))
    train_model.main(store, max_mae_regression=5.0)
    new = load_newest_model(store)
    assert new.metadata.artifact_format != LIST_FORMAT
    codes = new.model.product_codes.tolist()
    weeks = dict(zip(codes, new.model.catalogue.weeks_missing.tolist()))
    assert weeks["SKU006"] == 2
    assert new.model.predict_one("SKU006", 50) == old.model.predict_one("SKU006", 50)


def test_metadata_sections_read_as_typed_fields_from_old_and_new_models(tmp_path: Path) -> None:
    store = fixture_store(tmp_path, "unsigned")
    first, second = sorted(published_versions(store))
    old = load_model(store, second).metadata
    assert old.catalogue_section().carried == {"SKU006": 1}
    assert old.catalogue_section().products is None and old.products() == 6
    comparison = old.comparison_section()
    assert comparison is not None and comparison.live_version == first
    assert isinstance(comparison.live_mae, float) and comparison.rows > 0
    assert load_model(store, first).metadata.comparison_section() is None
    assert old.dataset_section().rows_used == old.dataset["rows_used"]

    week3 = generate_tranche(400, 6, seed=3).data
    put_tranche(store, week3, datetime(2026, 11, 20, 23))
    train_model.main(store, max_mae_regression=5.0)
    new = load_newest_model(store).metadata
    assert new.catalogue_section().products == 6 and new.products() == 6
    assert new.catalogue_section().carried == {}  # counted, not listed, since the change
    assert new.thresholds_section().r2_error == 0.5


def test_a_live_model_from_before_promises_leaves_its_promise_coverage_unknown(
    tmp_path: Path,
) -> None:
    store = fixture_store(tmp_path, "unsigned")
    old = load_newest_model(store).metadata.model_version
    put_tranche(store, generate_tranche(400, 6, seed=3).data, datetime(2026, 11, 20, 23))
    train_model.main(store, max_mae_regression=5.0)
    new = load_newest_model(store)
    comparison = new.metadata.model_extra["comparison"]  # type: ignore[index]
    assert comparison["live_version"] == old and comparison["rows"] > 0
    assert comparison["live_promise_coverage"] is None
    assert 0.8 < comparison["new_promise_coverage"] < 1.0
    listed = {row.version: row for row in models.model_rows(store, None)}
    assert listed[old].promise_coverage is None
    line = next(line for line in models.main(store).splitlines() if line.startswith(old))
    mae = f"{listed[old].mae:.4f}"
    assert line.split()[line.split().index(mae) + 1] == "-"
    app = create_app(lambda: load_model(store, old))
    with TestClient(app) as client:
        assert client.get("/api/v0.1/model").json()["promise_coverage"] is None
        exposition = client.app.state.metrics.exposition().decode()  # type: ignore[attr-defined]
    assert "ttd_model_promise_coverage_ratio{" not in exposition
