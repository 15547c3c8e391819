"""CORS as a browser meets it: preflights answered for the allowed origins only, and every
answer a page of such an origin gets (the fast path's, the app's refusals, the server's own
400 and 503, a 500) readable by it; no CORS at all when no origin is allowed."""
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from pipeline.registry.published import LoadedModel
from pipeline.service.app import API_PATH, BATCH_PATH, create_app
from pipeline.service.fast_path import EstimateFastPath
from pipeline.service.middleware.asgi import ASGIApp
from pipeline.service.middleware.body_budget import FREE_BODY_BYTES, BodyBudget
from pipeline.service.middleware.cors import MAX_AGE_SECONDS, allow_origins
from pipeline.service.middleware.request_guard import MAX_BODY_BYTES
from pipeline.service.served import Served
from pipeline.service.server.serve import guarded_app
from tests.unit.service.middleware.asgi_client import JSON, Client, run

UI = "https://ui.example.com"
LOCAL_UI = "http://127.0.0.1:3000"
ORDER = {"product_code": "SKU001", "orders_placed": 40}


def preflight(client: TestClient, origin: str, method: str = "POST",
              headers: str = "content-type") -> Response:
    """What a browser sends before a page's JSON POST to another origin."""
    response: Response = client.options(API_PATH, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    })
    return response


def cors_headers(response: Response) -> Dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture(scope="module")
def loaded(trained_model: LoadedModel) -> LoadedModel:
    return trained_model


def served_as_the_server_serves(loaded: LoadedModel, origins: Tuple[str, ...]) -> ASGIApp:
    """The app behind the server's middlewares, as serve() runs it."""
    return guarded_app(create_app(lambda: loaded), BodyBudget(64 * 2**20), None, origins)


@pytest.fixture
def client(loaded: LoadedModel) -> Iterator[TestClient]:
    app = served_as_the_server_serves(loaded, (UI, LOCAL_UI))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("origin", [UI, LOCAL_UI])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_preflight_from_an_allowed_origin_is_answered_for_the_api_s_methods_and_json(
    client: TestClient, origin: str, method: str
) -> None:
    response = preflight(client, origin, method)
    assert response.status_code == 200
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == origin
    assert {m.strip() for m in headers["access-control-allow-methods"].split(",")} == {
        "GET", "POST"}
    assert "content-type" in headers["access-control-allow-headers"].lower()
    assert headers["access-control-max-age"] == str(MAX_AGE_SECONDS) == "7200"
    assert "access-control-allow-credentials" not in headers
    assert "Origin" in response.headers["vary"]  # caches keep one answer per origin


@pytest.mark.parametrize("origin", [
    "https://evil.example.com", "https://ui.example.com.evil.example.com", "http://ui.example.com",
    "https://ui.example.com:8443", "http://127.0.0.1:3001", "null",
])
def test_a_preflight_from_any_other_origin_is_refused_without_cors_headers(
    client: TestClient, origin: str
) -> None:
    response = preflight(client, origin)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("method, headers", [
    ("DELETE", "content-type"), ("POST", "authorization"), ("POST", "content-type, x-debug"),
])
def test_a_preflight_for_a_method_or_header_the_api_does_not_take_is_refused(
    client: TestClient, method: str, headers: str
) -> None:
    assert preflight(client, UI, method, headers).status_code == 400


def test_the_fast_path_s_answers_are_readable_by_an_allowed_page(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: List[Optional[bytes]] = []
    for name in ("_single", "_batch"):
        original = getattr(EstimateFastPath, name)

        def spy(self: EstimateFastPath, served: Served, body: bytes, original: Any = original
                ) -> Optional[bytes]:
            answer: Optional[bytes] = original(self, served, body)
            answered.append(answer)
            return answer

        monkeypatch.setattr(EstimateFastPath, name, spy)
    origin = {"Origin": UI}
    responses = [
        client.post(API_PATH, json=ORDER, headers=origin),
        client.post(API_PATH, json={**ORDER, "promise_probability": 0.9}, headers=origin),
        client.post(BATCH_PATH, json={"orders": [ORDER] * 3}, headers=origin),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(answered) == 3 and all(answered)  # the fast path answered each, not the app
    for response in responses:
        assert response.headers["access-control-allow-origin"] == UI
        assert response.headers["access-control-expose-headers"] == "Retry-After"
        assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("path, body, content_type, status", [
    (API_PATH, b'{"product_code": "SKU999", "orders_placed": 1}', "application/json", 422),
    (API_PATH, b'{"product_code": "SKU001"}', "application/json", 422),
    (BATCH_PATH, b'{"orders": []}', "application/json", 422),
    (API_PATH, b'{"product_code": "SKU001", "orders_placed": 1}', "text/plain", 415),
    (API_PATH, b" " * (MAX_BODY_BYTES + 1), "application/json", 413),
])
def test_the_app_s_refusals_are_readable_by_an_allowed_page(
    client: TestClient, path: str, body: bytes, content_type: str, status: int
) -> None:
    response = client.post(path, content=body, headers={"Origin": UI, "Content-Type": content_type})
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == UI
    assert "detail" in response.json()  # the refusal a page can now show


def test_a_server_error_is_readable_by_an_allowed_page(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any) -> None:
        raise RuntimeError("a fault")

    monkeypatch.setattr(Served, "estimate", fail)
    response = client.post(API_PATH, json=ORDER, headers={"Origin": UI})
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == UI


def test_the_server_s_own_refusals_are_readable_by_an_allowed_page(loaded: LoadedModel) -> None:
    budget = BodyBudget(FREE_BODY_BYTES)  # room for no batch body at all
    app = guarded_app(create_app(lambda: loaded), budget, None, (UI,))
    origin = (b"origin", UI.encode())
    length = (b"content-length", str(FREE_BODY_BYTES + 1).encode())
    full, _ = run(app, [JSON, length, origin], Client([b" " * (FREE_BODY_BYTES + 1)]))
    assert full.status == 503
    assert full.headers[b"access-control-allow-origin"] == UI.encode()
    assert full.headers[b"access-control-expose-headers"] == b"Retry-After"
    assert full.headers[b"retry-after"] == b"1"
    ambiguous, _ = run(app, [JSON, (b"content-length", b"2"), (b"transfer-encoding", b"chunked"),
                             origin], Client([b"{}"]))
    assert ambiguous.status == 400
    assert ambiguous.headers[b"access-control-allow-origin"] == UI.encode()


def test_answers_to_other_origins_and_to_clients_without_one_carry_no_allowed_origin(
    client: TestClient
) -> None:
    other = client.post(API_PATH, json=ORDER, headers={"Origin": "https://evil.example.com"})
    plain = client.post(API_PATH, json=ORDER)
    assert other.status_code == plain.status_code == 200
    assert "access-control-allow-origin" not in other.headers  # the browser hides it
    assert cors_headers(plain) == {}  # curl, the platform's back end: as before
    assert other.content == plain.content


def test_with_no_origin_allowed_there_is_no_cors_layer_and_no_cors_header(
    loaded: LoadedModel
) -> None:
    def app(scope: Any, receive: Any, send: Any) -> Any:
        raise AssertionError("never called")

    assert allow_origins(app, ()) is app
    with TestClient(served_as_the_server_serves(loaded, ())) as client:
        refused = preflight(client, UI)
        answered = client.post(API_PATH, json=ORDER, headers={"Origin": UI})
    assert refused.status_code == 405  # OPTIONS is no method of the API's, as before
    assert answered.status_code == 200
    assert cors_headers(refused) == {} and cors_headers(answered) == {}
