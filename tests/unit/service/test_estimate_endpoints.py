"""The estimate endpoints' fast path: exact rounding, the same rules, the same answers."""
import json
import random
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from pipeline.service.api_schema import DispatchRequest
from pipeline.service.fast_path import ORDER, EstimateFastPath
from pipeline.service.served import Served, round_hours
from pipeline.service.middleware.asgi import Message, Receive, Scope, Send
from pipeline.service.metrics import ServiceMetrics
from pipeline.artifact.model import ProductLinearModel
from pipeline.registry.metadata import ModelMetadata
from pipeline.registry.published import LoadedModel
from pipeline.service.app import API_PATH, BATCH_PATH, BODY_LIMITS, create_app


def test_round_hours_equals_pythons_round_to_3_decimals_on_every_value() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([
        rng.uniform(0, 100, 200_000),
        rng.uniform(0, 1e8, 50_000),
        np.arange(0, 200_000) / 2000.0,  # every x.xxx5 that binary floats can hold near it
        np.arange(0, 20_000) / 16.0,  # exact halves of the third decimal: 0.0625, 0.1875 ...
        [0.0, 2.675, 1.0005, 0.0005, 1e-9, 123456.78950000001],
    ])
    expected = [round(v, 3) for v in values.tolist()]
    assert round_hours(values).tolist() == expected


def test_batch_estimates_equal_the_single_estimate_for_random_lines_and_queues() -> None:
    rng = random.Random(11)
    codes = tuple(f"SKU{i:04d}" for i in range(500))
    model = ProductLinearModel(
        codes,
        tuple(rng.uniform(-5, 5) for _ in codes),
        tuple(rng.uniform(-1, 2) for _ in codes),
    )
    served = Served(LoadedModel(model, ModelMetadata(
        model_version="v", created_at="now", artifact_key="k", artifact_sha256="h",
        artifact_format="f", metrics={}, dataset={})))
    picked = [rng.randrange(len(codes)) for _ in range(50_000)]
    orders = [rng.choice([rng.uniform(0, 400), rng.randint(0, 400), rng.uniform(0, 1e6)])
              for _ in picked]
    many = served.estimate(np.array(picked), np.asarray(orders, dtype=float)).tolist()
    assert many == [served.estimate(i, x) for i, x in zip(picked, orders)]
    assert served.positions([codes[i] for i in picked]).tolist() == picked
    assert all(np.copysign(1.0, h) == 1.0 for h in many)  # never -0.0


@pytest.mark.parametrize(
    "body",
    [
        b'{"product_code": "SKU001", "orders_placed": 12}',
        b'{"product_code": " SKU001 ", "orders_placed": 12.5}',
        b'{"product_code": "SKU001", "orders_placed": "12"}',
        b'{"product_code": "SKU001", "orders_placed": true}',
        b'{"product_code": "SKU001", "orders_placed": NaN}',
        b'{"product_code": "SKU001", "orders_placed": 1e999}',
        b'{"product_code": "SKU001", "orders_placed": -0.0}',
        b'{"product_code": "SKU001", "orders_placed": 1000000.0000001}',
        b'{"product_code": "", "orders_placed": 1}',
        b'{"product_code": "SKU001", "orders_placed": 1, "x": null}',
        b'{"product_code": "\\ud800", "orders_placed": 1}',
        b'{"product_code": "SKU001", "orders_placed": 1, "product_code": "SKU002"}',
        b'\xef\xbb\xbf{"product_code": "SKU001", "orders_placed": 1}',
        b"[]",
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": 0.9}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": null}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": 0.5}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": 0.99}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": 0.995}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": 0.49}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": "0.9"}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": true}',
        b'{"product_code": "SKU001", "orders_placed": 1, "promise_probability": NaN}',
    ],
)
def test_the_fast_path_accepts_exactly_what_the_request_model_accepts(body: bytes) -> None:
    def parsed(validate: Any) -> Optional[Dict[str, Any]]:
        try:
            value = validate(body)
        except ValidationError:
            return None
        # What the client sent: a field it left out is absent, not a default.
        return value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else dict(value)

    assert parsed(ORDER.validate_json) == parsed(DispatchRequest.model_validate_json)


class Behind:
    """The app behind the fast path: records the bodies it is handed, answers 299."""

    def __init__(self) -> None:
        self.bodies: List[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def loaded(trained_model: LoadedModel) -> LoadedModel:
    return trained_model


def fast_path_over(behind: Behind, loaded: LoadedModel) -> EstimateFastPath:
    class State:
        pass

    state = State()
    setattr(state, "served", Served(loaded))
    metrics = ServiceMetrics()
    metrics.set_model(loaded.metadata, True)
    return EstimateFastPath(behind, API_PATH, BATCH_PATH, BODY_LIMITS, state, metrics)


async def post(app: EstimateFastPath, path: str, chunks: List[bytes]) -> Message:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    sent: List[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(b"content-type", b"application/json")]}
    await app(scope, receive, send)
    return {"status": sent[0]["status"], "body": b"".join(m.get("body", b"") for m in sent[1:])}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_valid_requests_are_answered_without_the_app_behind_and_others_reach_it_whole(
    loaded: LoadedModel, anyio_backend: str
) -> None:
    behind = Behind()
    app = fast_path_over(behind, loaded)
    single = await post(app, API_PATH, [b'{"product_code": "SKU001",', b' "orders_placed": 7}'])
    batch = await post(app, BATCH_PATH, [b'{"orders": [{"product_code": "SKU002", '
                                         b'"orders_placed": 7}]}'])
    assert single["status"] == batch["status"] == 200 and behind.bodies == []
    hours = round(loaded.model.predict_one("SKU001", 7), 3)
    assert json.loads(single["body"]) == {
        "est_hours_to_dispatch": hours, "model_version": loaded.metadata.model_version}
    refused = [
        [b'{"product_code": "SKU999", ', b'"orders_placed": 7}'],
        [b'{"orders": [{"product_code": "SKU001", "orders_placed": -7}]}'],
        [b" " * 3000, b" " * 3000],  # over the single limit while streaming
    ]
    for path, chunks in zip((API_PATH, BATCH_PATH, API_PATH), refused):
        assert (await post(app, path, chunks))["status"] == 299
    assert behind.bodies == [b"".join(chunks) for chunks in refused]


@pytest.mark.parametrize("extra", [{}, {"promise_probability": 0.93}])
def test_the_routes_behind_answer_valid_requests_as_the_fast_path_does(
    loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch, extra: Dict[str, Any]
) -> None:
    rng = random.Random(4)
    orders = [{"product_code": rng.choice(loaded.model.product_codes),
               "orders_placed": rng.uniform(0, 500)} for _ in range(200)]
    answers = []
    for declined in (False, True):
        if declined:  # every request goes to the FastAPI routes
            monkeypatch.setattr(EstimateFastPath, "_single", lambda *args: None)
            monkeypatch.setattr(EstimateFastPath, "_batch", lambda *args: None)
        with TestClient(create_app(lambda: loaded)) as client:
            answers.append((
                [client.post(API_PATH, json={**order, **extra}).content for order in orders[:20]],
                client.post(BATCH_PATH, json={"orders": orders, **extra}).content,
            ))
    assert answers[0] == answers[1]  # byte for byte
    singles = [json.loads(a)["est_hours_to_dispatch"] for a in answers[0][0]]
    assert json.loads(answers[0][1])["estimates"][:20] == singles
