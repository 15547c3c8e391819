"""The promise contract: optional promise_probability on both estimate endpoints."""
import random
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from pipeline.registry.published import LoadedModel
from pipeline.service.app import API_PATH, BATCH_PATH, create_app


@pytest.fixture(scope="module")
def client(trained_model: LoadedModel) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: trained_model)) as client:
        yield client


def test_a_promise_is_answered_after_the_estimate_with_its_probability(
    client: TestClient, trained_model: LoadedModel
) -> None:
    response = client.post(
        API_PATH, json={"product_code": "SKU001", "orders_placed": 112, "promise_probability": 0.9}
    )
    assert response.status_code == 200
    answer = response.json()
    assert list(answer) == [
        "est_hours_to_dispatch", "model_version", "promise_hours_to_dispatch",
        "promise_probability",
    ]
    hours = round(trained_model.model.predict_one("SKU001", 112), 3)
    assert answer["est_hours_to_dispatch"] == hours
    assert answer["model_version"] == trained_model.metadata.model_version
    assert answer["promise_probability"] == 0.9
    assert answer["promise_hours_to_dispatch"] > answer["est_hours_to_dispatch"]


def test_without_a_probability_the_answer_is_byte_for_byte_the_two_keys(
    client: TestClient, trained_model: LoadedModel
) -> None:
    hours = round(trained_model.model.predict_one("SKU002", 40), 3)
    version = trained_model.metadata.model_version
    expected = f'{{"est_hours_to_dispatch":{hours!r},"model_version":"{version}"}}'.encode()
    for body in ({"product_code": "SKU002", "orders_placed": 40},
                 {"product_code": "SKU002", "orders_placed": 40, "promise_probability": None}):
        assert client.post(API_PATH, json=body).content == expected
    batch = client.post(BATCH_PATH, json={"orders": [{"product_code": "SKU002",
                                                      "orders_placed": 40}]})
    assert batch.content == f'{{"model_version":"{version}","estimates":[{hours!r}]}}'.encode()


def test_promises_rise_with_the_probability_and_are_never_negative(client: TestClient) -> None:
    promises = []
    for p in (0.5, 0.6, 0.75, 0.9, 0.95, 0.99):
        promises.append(client.post(API_PATH, json={
            "product_code": "SKU003", "orders_placed": 0, "promise_probability": p
        }).json()["promise_hours_to_dispatch"])
    assert promises == sorted(promises) and promises[0] >= 0 and promises[-1] > promises[0]


@pytest.mark.parametrize("probability", [0.49, 0.995, 1, 0, -0.9, "0.9", True, [0.9], {}])
def test_a_probability_out_of_bounds_or_not_a_number_gets_a_422_naming_the_field(
    client: TestClient, probability: Any
) -> None:
    response = client.post(API_PATH, json={
        "product_code": "SKU001", "orders_placed": 1, "promise_probability": probability})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "promise_probability"]
    batch = client.post(BATCH_PATH, json={
        "orders": [{"product_code": "SKU001", "orders_placed": 1}],
        "promise_probability": probability})
    assert batch.status_code == 422
    assert batch.json()["detail"][0]["loc"] == ["body", "promise_probability"]


def test_the_bounds_themselves_are_accepted(client: TestClient) -> None:
    for p in (0.5, 0.99):
        response = client.post(API_PATH, json={
            "product_code": "SKU001", "orders_placed": 1, "promise_probability": p})
        assert response.status_code == 200 and response.json()["promise_probability"] == p


def test_batch_promises_align_with_estimates_and_equal_the_single_answers(
    client: TestClient, trained_model: LoadedModel
) -> None:
    rng = random.Random(7)
    orders = [{"product_code": rng.choice(trained_model.model.product_codes),
               "orders_placed": rng.choice([rng.uniform(0, 400), rng.randint(0, 400)])}
              for _ in range(300)]
    batch = client.post(BATCH_PATH, json={"orders": orders, "promise_probability": 0.85})
    assert batch.status_code == 200
    answer = batch.json()
    assert list(answer) == ["model_version", "estimates", "promises", "promise_probability"]
    assert answer["promise_probability"] == 0.85
    singles = [client.post(API_PATH, json={**order, "promise_probability": 0.85}).json()
               for order in orders]
    assert answer["estimates"] == [s["est_hours_to_dispatch"] for s in singles]
    assert answer["promises"] == [s["promise_hours_to_dispatch"] for s in singles]


def test_a_probability_inside_a_batch_order_gets_a_422_naming_it(client: TestClient) -> None:
    response = client.post(BATCH_PATH, json={"orders": [
        {"product_code": "SKU001", "orders_placed": 1},
        {"product_code": "SKU001", "orders_placed": 1, "promise_probability": 0.9}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "orders", 1, "promise_probability"]


def test_a_model_trained_before_promises_refuses_a_probability_by_field_and_answers_without(
    trained_model: LoadedModel,
) -> None:
    old = LoadedModel(trained_model.model, trained_model.metadata)  # no "promise" in it
    with TestClient(create_app(lambda: old)) as client:
        for path, body in (
            (API_PATH, {"product_code": "SKU001", "orders_placed": 3, "promise_probability": 0.9}),
            (BATCH_PATH, {"orders": [{"product_code": "SKU001", "orders_placed": 3}],
                          "promise_probability": 0.9}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 422
            detail = response.json()["detail"][0]
            assert detail["loc"] == ["body", "promise_probability"]
            assert detail["type"] == "promise_unavailable" and "retrain" in detail["msg"]
        plain = client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 3})
        assert plain.status_code == 200 and set(plain.json()) == {
            "est_hours_to_dispatch", "model_version"}


def test_the_openapi_schema_describes_the_promise_on_both_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for request in ("DispatchRequest", "BatchRequest"):
        field = components[request]["properties"]["promise_probability"]
        assert "0.9" in field["description"]
        bounds = [b for b in field["anyOf"] if b.get("type") == "number"][0]
        assert (bounds["minimum"], bounds["maximum"]) == (0.5, 0.99)
    assert "promise_hours_to_dispatch" in components["DispatchEstimate"]["properties"]
    assert "promises" in components["BatchEstimates"]["properties"]
    assert "promise_probability" not in components["BatchOrder"]["properties"]
