"""Requests no well-behaved client sends: each gets a 4xx that says what is wrong."""
from typing import Dict, Iterator, List

import pytest
from fastapi.testclient import TestClient

from pipeline import train_model
from pipeline.service.middleware.request_guard import MAX_BODY_BYTES
from pipeline.registry.published import load_newest_model
from pipeline.service.app import API_PATH, create_app
from pipeline.registry.store import LocalStore

JSON = {"content-type": "application/json"}


@pytest.fixture
def client(store_with_tranche: LocalStore) -> Iterator[TestClient]:
    train_model.main(store_with_tranche)
    app = create_app(lambda: load_newest_model(store_with_tranche))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    "body, status, loc, message",
    [
        (b"not json", 422, ["body", 0], "request body is not valid JSON"),
        (b"[1, 2]", 422, ["body"], "valid dictionary"),
        (b'"SKU001"', 422, ["body"], "valid dictionary"),
        (b"{}", 422, ["body", "product_code"], "Field required"),
        (b'{"product_code": "SKU001", "orders_placed": NaN}', 422, ["body", "orders_placed"],
         "finite"),
        (b'{"product_code": "SKU001", "orders_placed": Infinity}', 422,
         ["body", "orders_placed"], "finite"),
        (b'{"product_code": "SKU001", "orders_placed": -Infinity}', 422,
         ["body", "orders_placed"], "finite"),
        (b'{"product_code": "SKU001", "orders_placed": 1e308}', 422, ["body", "orders_placed"],
         "less than or equal to 1000000"),
        (b'{"product_code": "SKU001", "orders_placed": 1e999}', 422, ["body", "orders_placed"],
         "finite"),
        (b'{"product_code": "SKU001", "orders_placed": false}', 422, ["body", "orders_placed"],
         "valid number"),
        (b'{"product_code": "", "orders_placed": 1}', 422, ["body", "product_code"],
         "at least 1 character"),
        (b'{"product_code": "' + b"A" * 65 + b'", "orders_placed": 1}', 422,
         ["body", "product_code"], "at most 64 characters"),
        (b'{"product_code": "\\ud800", "orders_placed": 1}', 422, ["body", "product_code"],
         "unicode"),
        (b'{"product_code": null, "orders_placed": 1}', 422, ["body", "product_code"],
         "valid string"),
        (b'{"product_code": "SKU001", "orders_placed": 1, "x": 1}', 422, ["body", "x"],
         "Extra inputs"),
        (b"\xff\xfe\x00", 400, ["request"], "send UTF-8 JSON"),
    ],
)
def test_malformed_bodies_get_a_4xx_naming_what_is_wrong(
    client: TestClient, body: bytes, status: int, loc: List[str], message: str
) -> None:
    response = client.post(API_PATH, content=body, headers=JSON)
    assert response.status_code == status, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc
    assert message in detail["msg"]


def test_a_megabyte_product_code_is_refused_with_413_before_parsing(client: TestClient) -> None:
    body = b'{"product_code": "' + b"A" * 1_000_000 + b'", "orders_placed": 1}'
    response = client.post(API_PATH, content=body, headers=JSON)
    assert response.status_code == 413
    assert response.json()["detail"][0]["msg"] == f"request body over {MAX_BODY_BYTES} bytes"


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"product_code": "'
        for _ in range(100):
            yield b"A" * 1000
        yield b'", "orders_placed": 1}'

    response = client.post(API_PATH, content=chunks(), headers=JSON)
    assert response.status_code == 413


@pytest.mark.parametrize("headers", [{"content-type": "text/plain"}, {}])
def test_a_body_not_declared_json_gets_415(client: TestClient, headers: Dict[str, str]) -> None:
    response = client.post(
        API_PATH, content=b'{"product_code": "SKU001", "orders_placed": 1}', headers=headers
    )
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"][0]["msg"]


def test_json_with_a_charset_is_accepted(client: TestClient) -> None:
    response = client.post(
        API_PATH,
        content=b'{"product_code": "SKU001", "orders_placed": 1}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


def test_wrong_method_and_path_get_the_same_error_shape(client: TestClient) -> None:
    assert client.get(API_PATH).json()["detail"][0]["type"] == "http_405"
    assert client.post("/api/v0.2/nope", json={}).json()["detail"][0]["type"] == "http_404"


def test_before_a_model_is_loaded_requests_get_503_not_500(store: LocalStore) -> None:
    app = create_app(lambda: load_newest_model(store))
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: nothing loaded
    response = client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 1})
    assert response.status_code == 503
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200
