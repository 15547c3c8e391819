"""Request bodies held in memory at once, across all connections, within one budget.

A body up to 4 KiB (a single order) goes through at once: the connection cap bounds what such
bodies take. A larger one reserves its declared length before any of it is read; if the
budget cannot hold it, it gets 503 with Retry-After, unread, and its connection is closed. A
chunked body, or one longer than any route reads, is counted as it arrives. A reservation is
given back when the app returns, which it does however the request ends: answered, refused,
timed out (408) or abandoned by the client.
"""
from typing import Callable, Iterable, Optional, Tuple

from pipeline.logs import configure_logger
from pipeline.service.log_filter import filtered_logger
from pipeline.service.middleware.asgi import ASGIApp, Header, Message, Receive, Scope, Send
from pipeline.service.middleware.refusals import error_body, send_closing
from pipeline.service.middleware.request_guard import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES

log = configure_logger(__name__)
filtered_logger(__name__)  # a flood of large bodies would repeat the refusal

# A body this small (a single order, under 4 KiB) is admitted whatever the budget holds: the
# connection cap bounds what such bodies can take (1,000 x 4 KiB = 4 MB).
FREE_BODY_BYTES = MAX_BODY_BYTES
RETRY_AFTER: Header = (b"retry-after", b"1")
BUDGET_FULL = error_body(
    503, "the server holds as many request bodies as its memory allows: try again shortly"
)


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


def declared_length(headers: Iterable[Header]) -> Tuple[int, bool]:
    """Return a request's declared Content-Length (0 if none or unreadable) and whether its
    body is chunked."""
    declared = b""
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            declared = value
        elif name == b"transfer-encoding":
            chunked = True
    return (int(declared) if declared.isdigit() else 0), chunked


class BodyBudgetGuard:
    """Fit each request's body in `budget` before the app reads it, or refuse it (503).

    `count` is called with "body_budget" for each body refused (the overload metrics).
    """

    def __init__(
        self, app: ASGIApp, budget: BodyBudget, count: Optional[Callable[[str], None]] = None
    ) -> None:
        self.app = app
        self.budget = budget
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size, chunked = declared_length(scope["headers"])
        if chunked or size > MAX_BATCH_BODY_BYTES:
            # Chunked, or longer than any route accepts (refused 413 unread behind).
            await self._streamed(scope, receive, send)
        elif size <= FREE_BODY_BYTES:
            await self.app(scope, receive, send)
        elif not self.budget.reserve(size):
            await self._refuse(send, size)
        else:
            try:
                await self.app(scope, receive, send)
            finally:
                self.budget.release(size)

    async def _refuse(self, send: Send, size: int) -> None:
        if self.count is not None:
            self.count("body_budget")
        log.warning(
            "Refused a request body (503): %d bytes would pass the memory budget of %d "
            "(TTD_HTTP_BODY_BUDGET_BYTES)",
            size,
            self.budget.limit,
        )
        await send_closing(send, 503, BUDGET_FULL, RETRY_AFTER)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting the body's bytes against the budget as they arrive: past
        it, answer 503 and tell the app the client left, as the request guard does for an
        oversized body."""
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
            if self.budget.reserve(more):
                held += more
                return message
            refused = True
            if not started:
                await self._refuse(send, received)
            elif self.count is not None:
                self.count("body_budget")
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not refused:
                started = True
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        finally:
            self.budget.release(held)
