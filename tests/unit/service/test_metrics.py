"""The metrics, parsed as Prometheus would, after real requests to the app; and /metrics
answered on the metrics port only."""
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List, Optional

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline import train_model
from pipeline.service.metrics import ServiceMetrics, start_metrics_server
from pipeline.artifact.model import CatalogueState, ProductLinearModel
from pipeline.codes.product_codes import ProductCodes
from pipeline.registry.metadata import ModelMetadata
from pipeline.registry.published import LoadedModel, load_newest_model
from pipeline.service.app import API_PATH, create_app
from pipeline.registry.store import LocalStore
from tests.scrape import Sample, parse_metrics, total, value

ESTIMATE = {"product_code": "SKU001", "orders_placed": 40}


def with_metadata(loaded: LoadedModel, **changes: Any) -> LoadedModel:
    """The same model, its metadata changed (extras included), as a later run might write."""
    document: Dict[str, Any] = {**loaded.metadata.model_dump(), **changes}
    return LoadedModel(loaded.model, ModelMetadata.model_validate(document))


def with_dropped(loaded: LoadedModel, codes: List[str]) -> LoadedModel:
    """The same model, as if these products had been dropped by an earlier run."""
    model = loaded.model
    state = CatalogueState(
        model.catalogue.weeks_missing, ProductCodes.from_strings(codes),
        np.zeros(len(codes), np.int16),
    )
    dropping = ProductLinearModel(model.product_codes, model.intercepts, model.slopes, state)
    return with_metadata(LoadedModel(dropping, loaded.metadata), catalogue={"max_carry_weeks": 4})


@pytest.fixture
def loaded(store_with_tranche: LocalStore) -> LoadedModel:
    train_model.main(store_with_tranche)
    return load_newest_model(store_with_tranche)


def serve(
    loaded: LoadedModel, newest: Optional[str] = None, pinned: bool = False
) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: loaded, newest, pinned)) as client:
        yield client


@pytest.fixture
def client(loaded: LoadedModel) -> Iterator[TestClient]:
    yield from serve(loaded)


def scrape(client: TestClient) -> Dict[Sample, float]:
    """What the metrics port answers now (test_metrics_are_answered_on_their_own_port...)."""
    metrics: ServiceMetrics = client.app.state.metrics  # type: ignore[attr-defined]
    return parse_metrics(metrics.exposition().decode("utf-8"))


def test_each_estimate_served_is_counted_once_in_the_seconds_histogram_of_its_model(
    client: TestClient, loaded: LoadedModel
) -> None:
    version = loaded.metadata.model_version
    before = scrape(client)
    served = [
        client.post(API_PATH, json={"product_code": "SKU002", "orders_placed": n}).json()
        for n in (0, 10, 60, 120, 200, 250, 300)
    ]
    after = scrape(client)
    count = value(after, "ttd_estimate_seconds_count", model_version=version)
    assert count - value(before, "ttd_estimate_seconds_count", model_version=version) == 7
    added = value(after, "ttd_estimate_seconds_sum", model_version=version) - value(
        before, "ttd_estimate_seconds_sum", model_version=version
    )
    assert added == pytest.approx(3600 * sum(s["est_hours_to_dispatch"] for s in served))
    within_24h = value(after, "ttd_estimate_seconds_bucket", model_version=version, le="86400.0")
    assert within_24h == sum(s["est_hours_to_dispatch"] <= 24 for s in served)


def test_refused_requests_do_not_count_as_estimates(client: TestClient) -> None:
    client.post(API_PATH, json={"product_code": "SKU999", "orders_placed": 1})
    assert total(scrape(client), "ttd_estimate_seconds_count") == 0


@pytest.mark.parametrize(
    "request_kwargs, reason",
    [
        ({"json": {"product_code": "SKU999", "orders_placed": 1}}, "unknown_product"),
        ({"json": {"product_code": "SKU404", "orders_placed": 1}}, "dropped_product"),
        ({"json": {"product_code": "SKU001", "orders_placed": -1}}, "out_of_range"),
        ({"json": {"product_code": "SKU001", "orders_placed": 2e6}}, "out_of_range"),
        ({"json": {"product_code": "", "orders_placed": 1}}, "bad_product_code"),
        ({"json": {"product_code": "SKU001"}}, "missing_field"),
        ({"json": {**ESTIMATE, "colour": "red"}}, "extra_field"),
        ({"json": {"product_code": "SKU001", "orders_placed": "12"}}, "wrong_type"),
        ({"json": [1, 2]}, "wrong_type"),
        (
            {"content": b'{"product_code": ', "headers": {"content-type": "application/json"}},
            "invalid_json",
        ),
        (
            {"content": b"\xff\xfe\x00", "headers": {"content-type": "application/json"}},
            "unreadable_body",
        ),
        (
            {"content": b" " * 5000, "headers": {"content-type": "application/json"}},
            "body_too_large",
        ),
        ({"content": b"{}", "headers": {"content-type": "text/plain"}}, "not_json"),
    ],
)
def test_each_refusal_is_counted_once_under_its_reason(
    loaded: LoadedModel, request_kwargs: Dict[str, Any], reason: str
) -> None:
    dropping = with_dropped(loaded, ["SKU404"])
    for client in serve(dropping):
        before = scrape(client)
        response = client.post(API_PATH, **request_kwargs)
        assert 400 <= response.status_code < 500
        after = scrape(client)
        grew = value(after, "ttd_refusals_total", reason=reason) - value(
            before, "ttd_refusals_total", reason=reason
        )
        assert grew == 1
        assert total(after, "ttd_refusals_total") - total(before, "ttd_refusals_total") == 1


def test_every_refusal_reason_is_exposed_at_zero_before_any_refusal(client: TestClient) -> None:
    samples = scrape(client)
    for reason in ("unknown_product", "dropped_product", "out_of_range", "body_too_large"):
        assert ("ttd_refusals_total", (("reason", reason),)) in samples


def test_requests_are_counted_by_route_template_never_by_the_raw_path(client: TestClient) -> None:
    client.post(API_PATH, json=ESTIMATE)
    client.post(API_PATH, json={"product_code": "SKU999", "orders_placed": 1})
    for path in ("/no/such/page", "/another/invented/path"):
        assert client.get(path).status_code == 404
    samples = scrape(client)
    name = "ttd_http_requests_total"
    assert value(samples, name, route=API_PATH, method="POST", status="200") == 1
    assert value(samples, name, route=API_PATH, method="POST", status="422") == 1
    assert value(samples, name, route="unmatched", method="GET", status="404") == 2
    routes = {dict(labels).get("route") for (n, labels) in samples if n == name}
    assert not any(route and "invented" in route for route in routes)
    duration = "ttd_http_request_duration_seconds_count"
    assert value(samples, duration, route=API_PATH, method="POST", status="200") == 1


def test_queues_beyond_the_trained_range_are_counted_as_extrapolation(
    client: TestClient, loaded: LoadedModel
) -> None:
    deciles = loaded.metadata.extra("profile")["orders_placed"]["quantiles"]
    lowest, highest = deciles[0], deciles[-1]
    before = scrape(client)
    client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": (lowest + highest) / 2})
    client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": highest})
    for beyond in (highest + 1, highest * 3):
        client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": beyond})
    after = scrape(client)
    name = "ttd_extrapolated_requests_total"
    assert value(after, name, side="above") - value(before, name, side="above") == 2
    assert value(after, name, side="below") == value(before, name, side="below")


def test_queues_below_the_trained_range_are_counted_as_extrapolation(
    loaded: LoadedModel,
) -> None:
    profile = {"orders_placed": {"quantiles": [20.0 + 10 * i for i in range(11)]}}
    for client in serve(with_metadata(loaded, profile=profile)):
        client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 5})
        client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 125})
        samples = scrape(client)
        assert value(samples, "ttd_extrapolated_requests_total", side="below") == 1
        assert value(samples, "ttd_extrapolated_requests_total", side="above") == 1


def test_the_model_served_is_described_with_its_version_tranche_and_age(
    loaded: LoadedModel,
) -> None:
    two_days_ago = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    older = with_metadata(loaded, created_at=two_days_ago)
    for client in serve(older):
        samples = scrape(client)
        labels = {
            "model_version": loaded.metadata.model_version,
            "tranche": loaded.metadata.dataset["key"],
            "created_at": two_days_ago,
        }
        assert value(samples, "ttd_model_info", **labels) == 1
        assert total(samples, "ttd_model_info") == 1
        age = value(samples, "ttd_model_age_seconds")
        assert 2 * 86400 <= age < 2 * 86400 + 600


def test_the_served_models_promise_coverage_is_a_gauge_of_its_version_alone(
    loaded: LoadedModel,
) -> None:
    version = loaded.metadata.model_version
    for client in serve(loaded):
        samples = scrape(client)
        coverage = value(samples, "ttd_model_promise_coverage_ratio", model_version=version)
        assert coverage == loaded.metadata.metrics["promise_coverage"]
        assert 0.8 < coverage < 1.0
        assert [s for s in samples if s[0] == "ttd_model_promise_coverage_ratio"] == [
            ("ttd_model_promise_coverage_ratio", (("model_version", version),))
        ]


def test_serving_newest_is_1_for_the_newest_model_and_0_when_pinned_to_an_older_one(
    loaded: LoadedModel,
) -> None:
    for client in serve(loaded, newest=loaded.metadata.model_version):
        assert value(scrape(client), "ttd_serving_newest_model") == 1
    for client in serve(loaded, newest="29991231T000000000000Z-000000000000", pinned=True):
        assert value(scrape(client), "ttd_serving_newest_model") == 0


def test_metrics_is_not_part_of_the_api_contract(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_are_answered_on_their_own_port_and_the_public_port_says_404(
    client: TestClient, loaded: LoadedModel
) -> None:
    client.post(API_PATH, json=ESTIMATE)
    metrics: ServiceMetrics = client.app.state.metrics  # type: ignore[attr-defined]
    server = start_metrics_server(metrics, "127.0.0.1", 0)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse_metrics(response.text)
    assert value(samples, "ttd_model_info", model_version=loaded.metadata.model_version,
                 tranche=loaded.metadata.dataset["key"],
                 created_at=loaded.metadata.created_at) == 1
    version = loaded.metadata.model_version
    assert value(samples, "ttd_estimate_seconds_count", model_version=version) == 1
    public = client.get("/metrics")
    assert public.status_code == 404
    assert public.json() == {
        "detail": [{"loc": ["request"], "msg": "Not Found", "type": "http_404"}]
    }
