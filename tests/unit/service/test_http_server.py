import asyncio
import json
import logging
import resource
import sys
from typing import Any, Dict, List, MutableMapping, Optional, Sequence, Tuple

import pytest
from pydantic import ValidationError

from pipeline.service.http_guards import MAX_BATCH_BODY_BYTES
from pipeline.service.http_limits import HttpLimits, RepeatFilter, fit_to_file_limit, raw_response
from pipeline.service.overload import Overload, guard_request
from pipeline.settings import Settings


def _records(filter_: RepeatFilter, messages: Sequence[Tuple[str, Tuple[str, ...]]]) -> List[str]:
    passed = []
    for msg, args in messages:
        record = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, args, None)
        if filter_.filter(record):
            passed.append(record.getMessage())
    return passed


def test_a_flood_of_one_log_line_is_cut_to_a_few_then_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(burst=5, window=10.0, clock=lambda: now[0])
    flood = [("Invalid HTTP request from %s", (f"10.0.0.{i % 250}",)) for i in range(10_000)]
    assert len(_records(repeats, flood)) == 5
    assert _records(repeats, [("Other line", ())]) == ["Other line"]  # other kinds still pass
    now[0] = 10.0
    assert _records(repeats, flood[:1]) == [
        "Invalid HTTP request from 10.0.0.0 (9995 more like this not logged)"
    ]


def test_a_failed_accept_is_logged_as_one_line_without_its_traceback() -> None:
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1,
        "socket.accept() out of system resource\nsocket: <socket>", None, exc_info,
    )
    assert RepeatFilter().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert line == "socket.accept() out of system resource: [Errno 24] Too many open files"


@pytest.mark.parametrize(
    "soft, wanted, expected",
    [
        (256, 1000, (144, 48)),  # (256 - 64 reserved) = 192: backlog 48, connections 144
        (1024, 1000, (720, 240)),
        (1_048_576, 1000, (1000, 2048)),  # a container's usual limit: the setting holds
        (1_048_576, 50, (50, 2048)),
    ],
)
def test_the_connection_cap_and_backlog_fit_under_the_file_limit(
    monkeypatch: pytest.MonkeyPatch, soft: int, wanted: int, expected: Tuple[int, int]
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, soft))
    cap, backlog = fit_to_file_limit(wanted)
    assert (cap, backlog) == expected
    assert cap + backlog + 64 <= soft


def test_raw_responses_have_the_api_error_shape_and_close() -> None:
    response = raw_response(408, "Request Timeout", "request headers not received within 10 s")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
    assert body.startswith(b'{"detail": [{"loc": ["request"], "msg": "request headers not')


def _request(headers: List[Tuple[bytes, bytes]]) -> Dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/", "headers": headers}


class _Client:
    """An ASGI server's side of one request: the body in chunks, and what was sent back."""

    def __init__(self, chunks: Sequence[bytes], leaves: bool = False) -> None:
        self.chunks = list(chunks)
        self.leaves = leaves  # the client disconnects after its last chunk
        self.sent: List[Dict[str, Any]] = []

    async def receive(self) -> Dict[str, Any]:
        if not self.chunks:
            return {"type": "http.disconnect"}
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks) or self.leaves}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))

    @property
    def status(self) -> Optional[int]:
        starts = [m["status"] for m in self.sent if m["type"] == "http.response.start"]
        return starts[0] if starts else None


def _overload(budget: int) -> Tuple[Overload, List[str]]:
    counted: List[str] = []
    return Overload(HttpLimits(body_budget=budget), counted.append), counted


async def _reads_then(client: _Client, scope: Any, outcome: str) -> None:
    """Run a guarded app that reads the whole body, then answers or raises."""
    held: List[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        held.append(overload.budget.held)
        if outcome == "raise":
            raise RuntimeError("the app failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    overload = scope["overload"]
    await guard_request(app, overload)(scope["request"], client.receive, client.send)
    scope["held"] = held


def _run(overload: Overload, headers: List[Tuple[bytes, bytes]], chunks: Sequence[bytes],
         outcome: str = "answer", leaves: bool = False) -> Tuple[_Client, List[int]]:
    client = _Client(chunks, leaves)
    scope: Dict[str, Any] = {"overload": overload, "request": _request(headers)}
    try:
        asyncio.run(_reads_then(client, scope, outcome))
    except RuntimeError:
        pass
    return client, scope.get("held", [])


JSON = (b"content-type", b"application/json")


def test_a_body_is_counted_while_the_app_holds_it_and_released_however_the_app_ends() -> None:
    overload, counted = _overload(3 * 1024 * 1024)
    length = (b"content-length", str(2 * 1024 * 1024).encode())
    client, held = _run(overload, [JSON, length], [b"x" * 1024 * 1024] * 2)
    assert (client.status, held, overload.budget.held) == (200, [2 * 1024 * 1024], 0)
    client, held = _run(overload, [JSON, length], [b"x" * 1024 * 1024] * 2, "raise")
    assert overload.budget.held == 0  # released when the app fails
    client, held = _run(overload, [JSON, length], [b"x"], leaves=True)  # gone mid-body
    assert (held, overload.budget.held, counted) == ([2 * 1024 * 1024], 0, [])


def test_a_body_beyond_the_budget_gets_503_with_retry_after_before_the_app_runs() -> None:
    overload, counted = _overload(3 * 1024 * 1024)
    overload.budget.reserve(2 * 1024 * 1024)  # a batch body already held
    length = (b"content-length", str(2 * 1024 * 1024).encode())
    client, held = _run(overload, [JSON, length], [b"x" * 1024])
    assert (client.status, held, counted) == (503, [], ["body_budget"])
    headers = dict(client.sent[0]["headers"])
    assert headers[b"retry-after"] == b"1" and headers[b"connection"] == b"close"
    assert json.loads(client.sent[1]["body"])["detail"][0]["type"] == "http_503"
    assert overload.budget.held == 2 * 1024 * 1024  # the refused body took nothing
    # A single order's body (under 4 KiB) is always admitted, and takes nothing.
    client, held = _run(overload, [JSON, (b"content-length", b"4000")], [b"x" * 4000])
    assert (client.status, held) == (200, [2 * 1024 * 1024])


def test_a_chunked_body_is_counted_as_it_arrives_and_refused_once_past_the_budget() -> None:
    overload, counted = _overload(2 * 1024 * 1024)
    chunked = (b"transfer-encoding", b"chunked")
    client, held = _run(overload, [JSON, chunked], [b"x" * 1024 * 1024] * 2)
    assert (client.status, held) == (200, [2 * 1024 * 1024 - 4096])  # first 4 KiB free
    overload.budget.reserve(1024 * 1024)
    client, held = _run(overload, [JSON, chunked], [b"x" * 1024 * 1024] * 2)
    assert (client.status, counted) == (503, ["body_budget"])
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]
    assert overload.budget.held == 1024 * 1024  # what this request held is given back


def test_the_body_budget_cannot_be_set_below_one_largest_batch_body() -> None:
    with pytest.raises(ValidationError):
        Settings(http_body_budget_bytes=MAX_BATCH_BODY_BYTES - 1)
    assert Settings(http_body_budget_bytes=MAX_BATCH_BODY_BYTES).http_body_budget_bytes == (
        MAX_BATCH_BODY_BYTES
    )
