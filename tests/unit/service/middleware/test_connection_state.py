import asyncio
from typing import Any, List

from pipeline.service.middleware.connection_state import ConnectionState
from tests.unit.service.middleware.asgi_client import JSON, Client, request


class Guard:
    """A connection's guard that records what it is told."""

    def __init__(self, draining: bool = False) -> None:
        self.draining = draining
        self.told: List[str] = []

    def request_started(self, has_body: bool) -> None:
        self.told.append(f"started, body {has_body}")

    def body_received(self) -> None:
        self.told.append("body received")

    def response_started(self) -> None:
        self.told.append("response started")

    def response_complete(self) -> None:
        self.told.append("response complete")


async def _reads_and_answers(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [JSON]})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    await send({"type": "http.response.body", "body": b"}"})


def _serve(guard: Any, headers: Any, chunks: Any) -> Client:
    client = Client(chunks)
    middleware = ConnectionState(_reads_and_answers, guard)
    asyncio.run(middleware(request(headers), client.receive, client.send))
    return client


def test_the_guard_is_told_when_the_body_is_read_and_when_the_response_is_complete() -> None:
    guard = Guard()
    client = _serve(guard, [JSON, (b"content-length", b"4")], [b"{", b"}"])
    assert guard.told == [
        "started, body True", "body received", "response started", "response complete",
    ]
    assert client.headers == {b"content-type": b"application/json"}  # kept alive


def test_a_request_without_a_body_says_so_when_it_starts() -> None:
    guard = Guard()
    _serve(guard, [(b"content-length", b"0")], [b""])
    assert guard.told[0] == "started, body False"


def test_while_draining_every_response_says_connection_close() -> None:
    client = _serve(Guard(draining=True), [JSON], [b""])
    assert client.headers[b"connection"] == b"close"


def test_a_lifespan_event_goes_to_the_app_untold() -> None:
    guard = Guard()
    seen: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    client = Client([])
    asyncio.run(ConnectionState(app, guard)({"type": "lifespan"}, client.receive, client.send))
    assert (seen, guard.told) == (["lifespan"], [])
