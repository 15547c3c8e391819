"""POST /api/v0.1/time_to_dispatch/batch: the single endpoint's answers and refusals, per order."""
import json
import random
from typing import Any, Dict, Iterator, List

import pytest
from fastapi.testclient import TestClient

from pipeline.service.api_schema import MAX_BATCH_ORDERS
from pipeline.service.middleware.request_guard import MAX_BATCH_BODY_BYTES
from pipeline.registry.published import LoadedModel, load_newest_model
from pipeline.service.app import API_PATH, BATCH_PATH, create_app
from pipeline.registry.store import LocalStore
from tests.scrape import parse_metrics, total, value
from tests.unit.service.test_metrics import with_dropped

JSON = {"content-type": "application/json"}
GOOD = {"product_code": "SKU001", "orders_placed": 112}


@pytest.fixture(scope="module")
def loaded(trained_model: LoadedModel) -> LoadedModel:
    return trained_model


@pytest.fixture
def client(loaded: LoadedModel) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: loaded), raise_server_exceptions=False) as client:
        yield client


def with_bad_order_at(index: int, bad: Any, count: int = 5) -> Dict[str, Any]:
    orders: List[Any] = [dict(GOOD) for _ in range(count)]
    orders[index] = bad
    return {"orders": orders}


def test_each_estimate_equals_the_single_endpoints_answer_in_order(
    client: TestClient, loaded: LoadedModel
) -> None:
    rng = random.Random(3)
    codes = list(loaded.model.product_codes)
    orders = [
        {"product_code": rng.choice(codes), "orders_placed": rng.choice(
            [rng.randint(0, 400), rng.uniform(0, 400), rng.uniform(0, 1e6), 0, 1e6]
        )}
        for _ in range(300)
    ]
    response = client.post(BATCH_PATH, json={"orders": orders})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == loaded.metadata.model_version
    singles = [client.post(API_PATH, json=order).json() for order in orders]
    assert answer["estimates"] == [single["est_hours_to_dispatch"] for single in singles]


def test_a_batch_of_ten_thousand_orders_is_answered(client: TestClient) -> None:
    response = client.post(BATCH_PATH, json={"orders": [GOOD] * MAX_BATCH_ORDERS})
    assert response.status_code == 200
    single = client.post(API_PATH, json=GOOD).json()["est_hours_to_dispatch"]
    assert response.json()["estimates"] == [single] * MAX_BATCH_ORDERS


def test_padded_product_codes_are_answered_like_clean_ones(client: TestClient) -> None:
    padded = {"product_code": " SKU001  ", "orders_placed": 112}
    response = client.post(BATCH_PATH, json={"orders": [padded, GOOD]})
    estimates = response.json()["estimates"]
    assert estimates[0] == estimates[1] == client.post(API_PATH, json=GOOD).json()[
        "est_hours_to_dispatch"]


@pytest.mark.parametrize(
    "bad, loc_end",
    [
        ({"product_code": "SKU999", "orders_placed": 1}, ["product_code"]),
        ({"product_code": "SKU001", "orders_placed": -1}, ["orders_placed"]),
        ({"product_code": "SKU001"}, ["orders_placed"]),
        ({"orders_placed": 3}, ["product_code"]),
        ({"product_code": "SKU001", "orders_placed": "12"}, ["orders_placed"]),
        ({"product_code": "SKU001", "orders_placed": True}, ["orders_placed"]),
        ({"product_code": 1, "orders_placed": 3}, ["product_code"]),
        ({"product_code": "", "orders_placed": 3}, ["product_code"]),
        ({"product_code": "SKU001", "orders_placed": 1e308}, ["orders_placed"]),
        ({"product_code": "SKU001", "orders_placed": 3, "colour": "red"}, ["colour"]),
        ("SKU001", []),
        (None, []),
    ],
)
def test_a_bad_order_gets_a_422_naming_its_index_and_field(
    client: TestClient, bad: Any, loc_end: List[str]
) -> None:
    response = client.post(BATCH_PATH, json=with_bad_order_at(3, bad))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "orders", 3, *loc_end]


@pytest.mark.parametrize(
    "raw, loc_end, message",
    [
        (b'{"product_code": "SKU001", "orders_placed": NaN}', ["orders_placed"], "finite"),
        (b'{"product_code": "SKU001", "orders_placed": Infinity}', ["orders_placed"], "finite"),
        (b'{"product_code": "SKU001", "orders_placed": -Infinity}', ["orders_placed"], "finite"),
        (b'{"product_code": "SKU001", "orders_placed": 1e999}', ["orders_placed"], "finite"),
        (b'{"product_code": "SKU001", "orders_placed": false}', ["orders_placed"], "valid number"),
        (b'{"product_code": "' + b"A" * 65 + b'", "orders_placed": 1}', ["product_code"],
         "at most 64 characters"),
        (b'{"product_code": "\\ud800", "orders_placed": 1}', ["product_code"], "unicode"),
        (b'{"product_code": null, "orders_placed": 1}', ["product_code"], "valid string"),
    ],
)
def test_hostile_orders_get_a_422_naming_their_index(
    client: TestClient, raw: bytes, loc_end: List[str], message: str
) -> None:
    good = json.dumps(GOOD).encode()
    body = b'{"orders": [' + b", ".join([good, good, raw, good]) + b"]}"
    response = client.post(BATCH_PATH, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "orders", 2, *loc_end]
    assert message in detail["msg"]
    assert "\\ud800" not in response.text and "AAAA" not in response.text  # no echo


def test_every_unknown_and_dropped_product_is_named_at_its_index(loaded: LoadedModel) -> None:
    dropping = with_dropped(loaded, ["SKU404"])
    with TestClient(create_app(lambda: dropping)) as client:
        orders = [GOOD, {"product_code": "SKU999", "orders_placed": 1}, GOOD,
                  {"product_code": "SKU404", "orders_placed": 1}]
        response = client.post(BATCH_PATH, json={"orders": orders})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [d["loc"] for d in detail] == [
        ["body", "orders", 1, "product_code"], ["body", "orders", 3, "product_code"]
    ]
    assert [d["type"] for d in detail] == ["unknown_product_code", "dropped_product_code"]
    assert "never seen" in detail[0]["msg"] and "has been dropped" in detail[1]["msg"]


@pytest.mark.parametrize("count", [0, MAX_BATCH_ORDERS + 1])
def test_an_empty_batch_or_one_over_ten_thousand_orders_gets_a_422_naming_orders(
    client: TestClient, count: int
) -> None:
    response = client.post(BATCH_PATH, json={"orders": [GOOD] * count})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "orders"]


@pytest.mark.parametrize(
    "body, status, loc",
    [
        (b"not json", 422, ["body", 0]),
        (b"[1, 2]", 422, ["body"]),
        (b"{}", 422, ["body", "orders"]),
        (b'{"orders": {}}', 422, ["body", "orders"]),
        (b'{"orders": [], "x": 1}', 422, ["body", "orders"]),
        (b'{"orders": [{"product_code": "SKU001", "orders_placed": 1}], "x": 1}', 422,
         ["body", "x"]),
        (b"\xff\xfe\x00", 400, ["request"]),
    ],
)
def test_malformed_batch_bodies_get_a_4xx_naming_what_is_wrong(
    client: TestClient, body: bytes, status: int, loc: List[Any]
) -> None:
    response = client.post(BATCH_PATH, content=body, headers=JSON)
    assert response.status_code == status, response.text
    assert response.json()["detail"][0]["loc"] == loc


def test_a_body_over_the_batch_limit_gets_413_before_parsing(client: TestClient) -> None:
    body = b'{"orders": [' + b" " * MAX_BATCH_BODY_BYTES + b"]}"
    response = client.post(BATCH_PATH, content=body, headers=JSON)
    assert response.status_code == 413
    assert response.json()["detail"][0]["msg"] == f"request body over {MAX_BATCH_BODY_BYTES} bytes"


def test_a_streamed_batch_without_length_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"orders": ['
        for _ in range(MAX_BATCH_BODY_BYTES // 50_000 + 2):
            yield (json.dumps(GOOD).encode() + b",") * 1000
        yield json.dumps(GOOD).encode() + b"]}"

    response = client.post(BATCH_PATH, content=chunks(), headers=JSON)
    assert response.status_code == 413


def test_ten_thousand_orders_with_the_longest_codes_pretty_printed_fit_the_limit() -> None:
    order = {"product_code": "A" * 64, "orders_placed": 999999.125}
    assert len(json.dumps({"orders": [order] * MAX_BATCH_ORDERS}, indent=2)) < MAX_BATCH_BODY_BYTES


@pytest.mark.parametrize("headers", [{"content-type": "text/plain"}, {}])
def test_a_batch_not_declared_json_gets_415(client: TestClient, headers: Dict[str, str]) -> None:
    body = json.dumps({"orders": [GOOD]}).encode()
    response = client.post(BATCH_PATH, content=body, headers=headers)
    assert response.status_code == 415


def test_before_a_model_is_loaded_a_batch_gets_503(store: LocalStore) -> None:
    client = TestClient(create_app(lambda: load_newest_model(store)), raise_server_exceptions=False)
    response = client.post(BATCH_PATH, json={"orders": [GOOD]})
    assert response.status_code == 503


def test_batch_estimates_requests_and_refusals_are_counted(
    client: TestClient, loaded: LoadedModel
) -> None:
    version = loaded.metadata.model_version
    orders = [{"product_code": "SKU002", "orders_placed": n} for n in (0, 10, 60, 120, 1e5)]
    served = client.post(BATCH_PATH, json={"orders": orders}).json()["estimates"]
    client.post(BATCH_PATH, json=with_bad_order_at(1, {"product_code": "SKU999",
                                                       "orders_placed": 1}))
    client.post(BATCH_PATH, json={"orders": []})
    client.post(BATCH_PATH, content=b"{}", headers={"content-type": "text/plain"})
    samples = parse_metrics(client.app.state.metrics.exposition().decode())  # type: ignore
    assert value(samples, "ttd_estimate_seconds_count", model_version=version) == 5
    assert value(samples, "ttd_estimate_seconds_sum", model_version=version) == pytest.approx(
        3600 * sum(served))
    assert value(samples, "ttd_estimate_seconds_bucket", model_version=version,
                 le="86400.0") == sum(h <= 24 for h in served)
    assert value(samples, "ttd_extrapolated_requests_total", side="above") == 1
    name = "ttd_http_requests_total"
    assert value(samples, name, route=BATCH_PATH, method="POST", status="200") == 1
    assert value(samples, name, route=BATCH_PATH, method="POST", status="422") == 2
    assert value(samples, name, route=BATCH_PATH, method="POST", status="415") == 1
    assert value(samples, "ttd_refusals_total", reason="unknown_product") == 1
    assert value(samples, "ttd_refusals_total", reason="batch_size") == 1
    assert value(samples, "ttd_refusals_total", reason="not_json") == 1
    assert total(samples, "ttd_refusals_total") == 3


def test_the_batch_endpoint_is_in_the_openapi_schema_with_its_models(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    post = schema["paths"][BATCH_PATH]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/BatchRequest")
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/BatchEstimates")
    orders = schema["components"]["schemas"]["BatchRequest"]["properties"]["orders"]
    assert (orders["minItems"], orders["maxItems"]) == (1, MAX_BATCH_ORDERS)
