import json
from typing import Any, List, Tuple

import pytest
from pydantic import ValidationError

from pipeline.service.middleware.body_budget import BodyBudget, BodyBudgetGuard
from pipeline.service.middleware.request_guard import MAX_BATCH_BODY_BYTES
from pipeline.settings import Settings
from tests.unit.service.middleware.asgi_client import JSON, Client, run

MIB = 1024 * 1024


def _guarded(budget: BodyBudget, outcome: str = "answer") -> Tuple[Any, List[int], List[str]]:
    """A guarded app that reads the whole body, then answers or raises; what the budget
    held while it ran, and what was counted."""
    held: List[int] = []
    counted: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        held.append(budget.held)
        if outcome == "raise":
            raise RuntimeError("the app failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return BodyBudgetGuard(app, budget, counted.append), held, counted


def test_a_body_is_counted_while_the_app_holds_it_and_released_however_the_app_ends() -> None:
    budget = BodyBudget(3 * MIB)
    length = (b"content-length", str(2 * MIB).encode())
    guarded, held, counted = _guarded(budget)
    client, _ = run(guarded, [JSON, length], Client([b"x" * MIB] * 2))
    assert (client.status, held, budget.held) == (200, [2 * MIB], 0)
    failing, _, _ = _guarded(budget, "raise")
    _, raised = run(failing, [JSON, length], Client([b"x" * MIB] * 2))
    assert raised and budget.held == 0  # released when the app fails
    run(guarded, [JSON, length], Client([b"x"], leaves=True))  # gone mid-body
    assert (held, budget.held, counted) == ([2 * MIB, 2 * MIB], 0, [])


def test_a_body_beyond_the_budget_gets_503_with_retry_after_before_the_app_runs() -> None:
    budget = BodyBudget(3 * MIB)
    budget.reserve(2 * MIB)  # a batch body already held
    guarded, held, counted = _guarded(budget)
    length = (b"content-length", str(2 * MIB).encode())
    client, _ = run(guarded, [JSON, length], Client([b"x" * 1024]))
    assert (client.status, held, counted) == (503, [], ["body_budget"])
    assert client.headers[b"retry-after"] == b"1" and client.headers[b"connection"] == b"close"
    assert json.loads(client.sent[1]["body"])["detail"][0]["type"] == "http_503"
    assert budget.held == 2 * MIB  # the refused body took nothing
    # A single order's body (under 4 KiB) is always admitted, and takes nothing.
    client, _ = run(guarded, [JSON, (b"content-length", b"4000")], Client([b"x" * 4000]))
    assert (client.status, held) == (200, [2 * MIB])


def test_a_chunked_body_is_counted_as_it_arrives_and_refused_once_past_the_budget() -> None:
    budget = BodyBudget(2 * MIB)
    guarded, held, counted = _guarded(budget)
    chunked = (b"transfer-encoding", b"chunked")
    client, _ = run(guarded, [JSON, chunked], Client([b"x" * MIB] * 2))
    assert (client.status, held) == (200, [2 * MIB - 4096])  # the first 4 KiB free
    budget.reserve(MIB)
    client, _ = run(guarded, [JSON, chunked], Client([b"x" * MIB] * 2))
    assert (client.status, counted) == (503, ["body_budget"])
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]
    assert budget.held == MIB  # what this request held is given back


def test_the_body_budget_cannot_be_set_below_one_largest_batch_body() -> None:
    with pytest.raises(ValidationError):
        Settings(http_body_budget_bytes=MAX_BATCH_BODY_BYTES - 1)
    assert Settings(http_body_budget_bytes=MAX_BATCH_BODY_BYTES).http_body_budget_bytes == (
        MAX_BATCH_BODY_BYTES
    )
