"""Tell a connection's guard what only the ASGI layer sees, and close connections that drain.

The server's guard of a connection (pipeline/service/server/connection_guard.py) sees its
bytes; it cannot see when the parser has handed a request to the app, when the app has read
its body, or when its response is complete. This middleware, one per connection (the server
puts it in front of the app for each connection it admits), tells it, and while the
connection drains (SIGTERM) adds `Connection: close` to each response, which both of
uvicorn's parsers honour.
"""
from typing import Iterable

from typing import Protocol

from pipeline.service.middleware.asgi import CLOSE_HEADER, ASGIApp, Header, Message, Receive
from pipeline.service.middleware.asgi import Scope, Send


class ConnectionEvents(Protocol):
    """What a connection's guard is told of the requests on it."""

    draining: bool

    def request_started(self, has_body: bool) -> None: ...

    def body_received(self) -> None: ...

    def response_started(self) -> None: ...

    def response_complete(self) -> None: ...


def has_body(headers: Iterable[Header]) -> bool:
    """Say whether a request's headers announce a body (a length above 0, or chunks)."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.isdigit() and int(value) > 0:
            return True
    return False


class ConnectionState:
    """Report each request's progress to `connection`; say close while it drains."""

    def __init__(self, app: ASGIApp, connection: ConnectionEvents) -> None:
        self.app = app
        self.connection = connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = self.connection
        connection.request_started(has_body(scope["headers"]))

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                connection.body_received()
            return message

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                connection.response_started()
                if connection.draining:
                    message = closing(message)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                connection.response_complete()

        await self.app(scope, watched_receive, watched_send)


def closing(start: Message) -> Message:
    """Return a response start that says `Connection: close` (a copy: the app's may be
    shared)."""
    headers = list(start.get("headers", ()))
    if CLOSE_HEADER in headers:
        return start
    return {**start, "headers": [*headers, CLOSE_HEADER]}
