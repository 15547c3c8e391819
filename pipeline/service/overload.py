"""Overload: request bodies held in memory within one budget across all connections, and
the connections waiting for request headers, oldest first, to be shed at the cap.
"""
import asyncio
from collections import OrderedDict
from typing import Any, Callable, Tuple

from typing_extensions import Protocol

from pipeline.service.http_guards import (
    MAX_BATCH_BODY_BYTES,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
)
from pipeline.logs import configure_logger

from pipeline.service.http_limits import (
    BODY_BUDGET_FULL,
    CLOSE_HEADER,
    FREE_BODY_BYTES,
    RETRY_AFTER,
    HttpLimits,
    error_body,
    filtered_logger,
)

Header = Tuple[bytes, bytes]

log = configure_logger(__name__)
filtered_logger(__name__)  # the closures an attack can repeat are rate-limited


class BodyBudget:
    """Request body bytes held in memory at once, across all connections, and their limit.

    A body is counted from the moment its headers are in (its declared length, reserved
    before any of it is read) until its request has been answered or its connection lost:
    the time the fast path and the app hold it, parse it and answer it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, size: int) -> bool:
        """Count `size` more bytes as held, or say False if that would pass the limit."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size


class _Connection(Protocol):
    """What the connection's guard shows of the protocol object it guards."""

    transport: asyncio.Transport
    cycle: Any  # the parser's RequestResponseCycle: the request being answered, if any


class Sheddable(Protocol):
    """A connection's guard (http_server.ConnectionGuard), as the shedding sees it."""

    owner: _Connection

    def shed(self) -> None:
        ...


def _count_nothing(reason: str) -> None:
    """The overload counter when the app has no metrics (a bare ASGI app in a test)."""


class Overload:
    """What all connections of one server share: the body budget, the connections waiting
    for request headers (oldest first), and how many closures are under way."""

    def __init__(self, limits: HttpLimits, count: Callable[[str], None] = _count_nothing) -> None:
        self.limits = limits
        self.budget = BodyBudget(limits.body_budget)
        self.waiting: "OrderedDict[Sheddable, None]" = OrderedDict()
        self.closing = 0  # connections closed by the cap or shedding, not yet gone
        self.count = count

    def at_cap(self, open_connections: int) -> bool:
        return open_connections - self.closing > self.limits.max_connections

    def shed_oldest(self) -> bool:
        """Close the connection that has waited longest for a request's headers, to make room
        for a new one; say False if no connection is waiting for headers."""
        while self.waiting:
            guard, _ = self.waiting.popitem(last=False)
            cycle = guard.owner.cycle
            busy = cycle is not None and not cycle.response_complete  # pipelined: answering
            if not guard.owner.transport.is_closing() and not busy:
                guard.shed()
                return True
        return False


async def _send_closing(send: Send, status: int, body: bytes, *headers: Header) -> None:
    """Answer a refusal in the API's JSON shape, closing the connection after it."""
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *headers, CLOSE_HEADER],
    })
    await send({"type": "http.response.body", "body": body})


async def _refuse_body(send: Send, size: int, budget: BodyBudget) -> None:
    log.warning(
        "Refused a request body (503): %d bytes would pass the memory budget of %d "
        "(TTD_HTTP_BODY_BUDGET_BYTES)",
        size,
        budget.limit,
    )
    await _send_closing(send, 503, BODY_BUDGET_FULL, RETRY_AFTER)


async def _refuse_ambiguous(send: Send) -> None:
    log.warning("Refused a request with an ambiguous body length (400, closed)")
    message = (
        "a request may carry Content-Length or Transfer-Encoding, not both, "
        "and Content-Length once"
    )
    await _send_closing(send, 400, error_body(400, message))


async def _streamed_within_budget(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, overload: Overload
) -> None:
    """Run `app`, counting the body's bytes against the budget as they arrive (a chunked
    body, or one longer than any route reads): past the budget, answer 503 and tell the app
    the client left, as the request guard does for an oversized body."""
    budget = overload.budget
    received = held = 0
    refused = started = False

    async def counted_receive() -> Message:
        nonlocal received, held, refused
        message = await receive()
        if message["type"] != "http.request" or refused:
            return message
        received += len(message.get("body", b""))
        more = received - FREE_BODY_BYTES - held
        if more <= 0:
            return message
        if budget.reserve(more):
            held += more
            return message
        refused = True
        overload.count("body_budget")
        if not started:
            await _refuse_body(send, received, budget)
        return {"type": "http.disconnect"}

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if not refused:
            started = True
            await send(message)

    try:
        await app(scope, counted_receive, guarded_send)
    finally:
        budget.release(held)


def guard_request(app: ASGIApp, overload: Overload) -> ASGIApp:
    """Check a request's framing and fit its body in the memory budget, before `app` runs.

    A request with both Content-Length and Transfer-Encoding, or two Content-Lengths, gets
    400 (RFC 9112, 6.1): a proxy in front and this server may cut the body in different
    places, and the bytes after it would run as a second, smuggled request. Closing the
    connection after the 400 means those bytes are never read. (Both parsers refuse such
    requests themselves today; this holds if one stops doing so.)

    A body up to 4 KiB goes through at once. A larger one reserves its declared length;
    if the budget cannot hold it, it gets 503 with Retry-After, unread, and its connection
    is closed. The reservation is released when the app returns, which it does however the
    request ends: answered, refused, timed out (408) or abandoned by the client.
    """

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        lengths = 0
        declared = b""
        chunked = False
        for name, value in scope["headers"]:  # both parsers give lower-case names
            if name == b"content-length":
                lengths += 1
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if lengths > 1 or (lengths and chunked):
            await _refuse_ambiguous(send)
            return
        if not chunked:
            size = int(declared) if declared.isdigit() else 0
            if size <= FREE_BODY_BYTES:
                await app(scope, receive, send)
                return
            if size <= MAX_BATCH_BODY_BYTES:
                budget = overload.budget
                if not budget.reserve(size):
                    overload.count("body_budget")
                    await _refuse_body(send, size, budget)
                    return
                try:
                    await app(scope, receive, send)
                finally:
                    budget.release(size)
                return
        # Longer than any route accepts (refused 413 unread behind), or chunked.
        await _streamed_within_budget(app, scope, receive, send, overload)

    return guarded
