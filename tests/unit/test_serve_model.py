from typing import Any, Dict, Iterator

import pytest
from fastapi.testclient import TestClient

from pipeline import train_model
from pipeline.registry.published import load_newest_model
from pipeline.service.app import API_PATH, create_app
from pipeline.registry.store import LocalStore


@pytest.fixture
def client(store_with_tranche: LocalStore) -> Iterator[TestClient]:
    train_model.main(store_with_tranche)
    with TestClient(create_app(lambda: load_newest_model(store_with_tranche))) as client:
        yield client


def test_estimate_comes_from_the_loaded_model_with_its_version(
    client: TestClient, store_with_tranche: LocalStore
) -> None:
    loaded = load_newest_model(store_with_tranche)
    response = client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 112})
    assert response.status_code == 200
    assert response.json() == {
        "est_hours_to_dispatch": round(loaded.model.predict_one("SKU001", 112), 3),
        "model_version": loaded.metadata.model_version,
    }
    busier = client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 180.5})
    assert busier.json()["est_hours_to_dispatch"] > response.json()["est_hours_to_dispatch"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"product_code": "SKU999", "orders_placed": 1}, "product_code"),
        ({"product_code": "SKU001", "orders_placed": -1}, "orders_placed"),
        ({"product_code": "SKU001"}, "orders_placed"),
        ({"orders_placed": 3}, "product_code"),
        ({"product_code": "SKU001", "orders_placed": "12"}, "orders_placed"),
        ({"product_code": "SKU001", "orders_placed": True}, "orders_placed"),
        ({"product_code": 1, "orders_placed": 3}, "product_code"),
        ({"product_code": "", "orders_placed": 3}, "product_code"),
        ({"product_code": "SKU001", "orders_placed": 1e308}, "orders_placed"),
        ({"product_code": "SKU001", "orders_placed": 3, "colour": "red"}, "colour"),
    ],
)
def test_invalid_requests_get_a_422_naming_the_field(
    client: TestClient, body: Dict[str, Any], field: str
) -> None:
    response = client.post(API_PATH, json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_unknown_product_is_named_in_the_message_as_never_seen(client: TestClient) -> None:
    response = client.post(API_PATH, json={"product_code": "SKU999", "orders_placed": 1})
    detail = response.json()["detail"][0]
    assert "unknown product code 'SKU999'" in detail["msg"] and "never seen" in detail["msg"]
    assert detail["type"] == "unknown_product_code"


def test_a_padded_product_code_is_answered_like_the_clean_one(client: TestClient) -> None:
    clean = client.post(API_PATH, json={"product_code": "SKU002", "orders_placed": 50})
    padded = client.post(API_PATH, json={"product_code": " SKU002  ", "orders_placed": 50})
    assert padded.status_code == 200 and padded.json() == clean.json()


def test_health_ready_and_docs_answer(client: TestClient, store_with_tranche: LocalStore) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    version = load_newest_model(store_with_tranche).metadata.model_version
    assert client.get("/ready").json() == {"status": "ready", "model_version": version}
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert API_PATH in schema["paths"]
