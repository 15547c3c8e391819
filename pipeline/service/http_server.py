"""The HTTP server: uvicorn, with limits that hold against slow clients, floods and shutdowns.

uvicorn on its own holds a connection that sends half a request forever, accepts connections
until the process runs out of file descriptors (then asyncio logs a traceback per failed
accept), closes idle keep-alive connections at SIGTERM while a request may be on its way to
them, and with h11 runs a request that has both Content-Length and Transfer-Encoding. Both of
its HTTP protocol classes (h11 and httptools) are subclassed here, the same way:

- a connection must send a request's headers within `header_timeout` of opening (or of the
  request's first byte), then its body within `body_timeout`; otherwise it gets 408 and is
  closed;
- at `max_connections` open at once (kept below the file limit), a new connection takes the
  place of the one that has waited longest for a request's headers (a stalled client: it gets
  408 and is closed), so that a client that sends a whole request at once is answered while
  thousands stall; only when no connection is waiting for headers does a new one get 503;
- request bodies held in memory, across all connections, stay within `body_budget` bytes: a
  request whose body would exceed it gets 503 with Retry-After before its body is read, and
  a body under 4 KiB (a single order) is always admitted;
- on SIGTERM, every response says `Connection: close`, and an idle keep-alive connection stays
  open for `drain_grace` seconds, so that a request already on its way is still answered;
- a request line and headers over 16 KiB get 431 and the connection is closed (httptools has
  no limit of its own);
- a request with both Content-Length and Transfer-Encoding, or two Content-Lengths, gets 400
  and its connection is closed (RFC 9112, section 6.1), before the application sees it; so
  does any request the parser cannot read, in the API's JSON error shape (uvicorn's own 400 is
  plain text).

Repeated log lines (asyncio's failed accepts, uvicorn's warnings, the closures above) are
rate-limited by RepeatFilter, so an attack cannot flood the log.
"""
import asyncio
import importlib.util
import json
import logging
import resource
import time
from collections import OrderedDict
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Type,
    cast,
)

import h11
import uvicorn
from typing_extensions import Literal, Protocol
from uvicorn.protocols.http.h11_impl import H11Protocol

from pipeline.service.http_guards import (
    MAX_BATCH_BODY_BYTES,
    MAX_BODY_BYTES,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
)
from pipeline.logs import configure_logger
from pipeline.settings import Settings

log = configure_logger(__name__)

Parser = Literal["h11", "httptools"]
CLOSE_HEADER = (b"connection", b"close")
# File descriptors kept free for the process itself (logs, the store, S3 connections) when the
# connection cap is fitted under the file limit.
RESERVED_FILES = 64
MAX_BACKLOG = 2048  # uvicorn's default: asyncio accepts up to this many at once
# A body this small (a single order, under 4 KiB) is admitted whatever the memory budget holds:
# the connection cap bounds what such bodies can take (1,000 x 4 KiB = 4 MB).
FREE_BODY_BYTES = MAX_BODY_BYTES
RETRY_AFTER = (b"retry-after", b"1")
# A request line and headers are under 1 KiB here; 16 KiB is h11's and Node's limit. httptools
# sets none: without one, a client could grow a header in memory until its deadline.
MAX_HEADER_BYTES = 16 * 1024


class HttpLimits(NamedTuple):
    """How long a client may take, how many may connect, and how long a drain waits."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 1000
    drain_grace: float = 2.0
    body_budget: int = 64 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> "HttpLimits":
        return cls(
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            keep_alive_timeout=settings.http_keep_alive_timeout,
            max_connections=settings.http_max_connections,
            drain_grace=settings.http_drain_grace,
            body_budget=settings.http_body_budget_bytes,
        )


def error_body(status: int, message: str) -> bytes:
    """Return the API's error shape for a refusal made by the HTTP layer."""
    return json.dumps(
        {"detail": [{"loc": ["request"], "msg": message, "type": f"http_{status}"}]}
    ).encode()


def raw_response(
    status: int, reason: str, message: str, retry_after: Optional[int] = None
) -> bytes:
    """Return a whole HTTP response that closes the connection, in the API's error shape."""
    body = error_body(status, message)
    retry = "" if retry_after is None else f"retry-after: {retry_after}\r\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{retry}connection: close\r\n\r\n"
    )
    return head.encode() + body


SERVICE_UNAVAILABLE = raw_response(
    503, "Service Unavailable", "too many connections open: try again shortly", retry_after=1
)
INVALID_REQUEST = raw_response(
    400,
    "Bad Request",
    "not a valid HTTP request: a malformed request line or header, or an ambiguous body "
    "length (Content-Length with Transfer-Encoding, or two Content-Lengths)",
)
HEADERS_TOO_LARGE = raw_response(
    431, "Request Header Fields Too Large",
    f"request line and headers over {MAX_HEADER_BYTES} bytes",
)
BODY_BUDGET_FULL = error_body(
    503, "the server holds as many request bodies as its memory allows: try again shortly"
)


def fit_to_file_limit(max_connections: int) -> Tuple[int, int]:
    """Return the connection cap and listen backlog that fit under the process's file limit.

    asyncio accepts up to `backlog` connections in one go before any is refused, so the cap
    plus the backlog must stay below the limit, or accept() fails for want of descriptors.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections, MAX_BACKLOG
    budget = max(2, soft - RESERVED_FILES)
    backlog = max(1, min(MAX_BACKLOG, budget // 4))
    return max(1, min(max_connections, budget - backlog)), backlog


class RepeatFilter(logging.Filter):
    """Let through at most `burst` records of one kind per `window` seconds.

    A flood (a failed accept per connection, a warning per bad request) would otherwise fill
    the disk and bury everything else. The next record let through says how many were
    dropped. The traceback of asyncio's "out of system resource" is replaced by its message.
    """

    def __init__(
        self, burst: int = 5, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self.kinds: Dict[Tuple[str, str], List[float]] = {}  # [window start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        first_line = str(record.msg).split("\n", 1)[0]
        key = (record.name, first_line[:200])
        now = self.clock()
        if len(self.kinds) > 1000:  # messages built with f-strings: keep the table bounded
            self.kinds.clear()
        start, count, dropped = self.kinds.get(key, [now, 0.0, 0.0])
        if now - start >= self.window:
            start, count = now, 0.0
        if count >= self.burst:
            self.kinds[key] = [start, count, dropped + 1]
            return False
        self.kinds[key] = [start, count + 1, 0.0]
        if "out of system resource" in first_line and record.exc_info:
            record.msg = f"{first_line}: {record.exc_info[1]}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        if dropped:
            record.msg = f"{record.getMessage()} ({int(dropped)} more like this not logged)"
            record.args = None
        return True


def filtered_logger(name: str) -> logging.Logger:
    """Return a logger with a RepeatFilter (added once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger


filtered_logger(__name__)


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


def _count_nothing(reason: str) -> None:
    """The overload counter when the app has no metrics (a bare ASGI app in a test)."""


class Overload:
    """What all connections of one server share: the body budget, the connections waiting
    for request headers (oldest first), and how many closures are under way."""

    def __init__(self, limits: HttpLimits, count: Callable[[str], None] = _count_nothing) -> None:
        self.limits = limits
        self.budget = BodyBudget(limits.body_budget)
        self.waiting: "OrderedDict[ConnectionGuard, None]" = OrderedDict()
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


async def _refuse_body(send: Send, size: int, budget: BodyBudget) -> None:
    log.warning(
        "Refused a request body (503): %d bytes would pass the memory budget of %d "
        "(TTD_HTTP_BODY_BUDGET_BYTES)",
        size,
        budget.limit,
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY_BUDGET_FULL)).encode()),
                RETRY_AFTER,
                CLOSE_HEADER,
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY_BUDGET_FULL})


async def _refuse_ambiguous(send: Send) -> None:
    log.warning("Refused a request with an ambiguous body length (400, closed)")
    message = (
        "a request may carry Content-Length or Transfer-Encoding, not both, "
        "and Content-Length once"
    )
    body = error_body(400, message)
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                CLOSE_HEADER,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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


class _Owner(Protocol):
    """What ConnectionGuard needs of the protocol object it guards."""

    transport: asyncio.Transport
    cycle: Any  # the parser's RequestResponseCycle: the request being answered, if any


class ConnectionGuard:
    """One connection's read deadlines and drain, shared by both protocol classes.

    `reading` is which part of a request is awaited: "headers" from the connection's opening
    or the request's first byte, "body" once its headers are in, None once it is whole.
    While headers are awaited, or the connection is idle between keep-alive requests, it is
    in `overload.waiting`, in the order it began waiting, so that the longest waiting can be
    shed when the connection cap is reached (nginx closes idle keep-alive connections when it
    runs out of them, too).
    """

    def __init__(
        self, owner: _Owner, overload: Overload, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.owner = owner
        self.limits = overload.limits
        self.overload = overload
        self.loop = loop
        self.reading: Optional[str] = None
        self.started = False  # some bytes of the awaited request have arrived
        self.header_bytes = 0  # received since the request began, while its headers are not in
        self.waiting_since = 0.0
        self.deadline: Optional[asyncio.TimerHandle] = None
        self.draining = False
        self.grace: Optional[asyncio.TimerHandle] = None
        self.closed_for_room = False  # by the cap or shedding: counted in overload.closing

    def expect_headers(self, started: bool) -> None:
        """A request is due (`started` False: the connection just opened) or has begun."""
        if self.reading == "headers":
            self.started = self.started or started
            return
        self.reading, self.started = "headers", started
        self._wait()
        self._arm(self.limits.header_timeout)

    def idle(self) -> None:
        """The response is complete and the connection kept alive: it waits for the next
        request (uvicorn's keep-alive timeout closes it if none comes)."""
        if self.reading is None:
            self._wait()

    def _wait(self) -> None:
        self.waiting_since = self.loop.time()
        self.overload.waiting[self] = None
        self.overload.waiting.move_to_end(self)

    def expect_body(self) -> None:
        if self.reading != "body":
            self.overload.waiting.pop(self, None)
            self.reading, self.started, self.header_bytes = "body", True, 0
            self._arm(self.limits.body_timeout)

    def request_received(self) -> None:
        self.overload.waiting.pop(self, None)
        self.reading, self.started, self.header_bytes = None, False, 0
        self._disarm()

    def count_header_bytes(self, size: int) -> None:
        """Count bytes received before a request's headers are complete."""
        if self.reading != "body":
            self.header_bytes += size

    def limit_header_bytes(self) -> None:
        """Answer 431 and close once a request's line and headers pass MAX_HEADER_BYTES."""
        transport = self.owner.transport
        if self.reading != "headers" or self.header_bytes <= MAX_HEADER_BYTES:
            return
        if not transport.is_closing():
            self._disarm()
            transport.write(HEADERS_TOO_LARGE)
            transport.close()
            log.warning("Refused a request whose line and headers pass %d bytes (431, closed)",
                        MAX_HEADER_BYTES)

    def connection_lost(self) -> None:
        self.overload.waiting.pop(self, None)
        if self.closed_for_room:
            self.overload.closing -= 1
            self.closed_for_room = False
        self._disarm()
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None

    def refuse(self, open_now: int) -> None:
        """Answer 503 and close at once: the cap is reached and no connection can be shed."""
        self._closing_for_room()
        self.owner.transport.write(SERVICE_UNAVAILABLE)
        self.owner.transport.close()
        self.overload.count("connection_cap")
        log.warning(
            "Refused a connection (503): %d open, the limit is %d (TTD_HTTP_MAX_CONNECTIONS), "
            "none waiting for request headers",
            open_now,
            self.limits.max_connections,
        )

    def shed(self) -> None:
        """Close this connection, which has waited longest for request headers, to make room
        for a new one at the connection cap (as if its header deadline had passed)."""
        self._closing_for_room()
        self.overload.count("stalled_closed")
        waited = self.loop.time() - self.waiting_since
        self._close(
            f"request headers not received within {waited:.1f} s, with the server at its "
            "connection limit",
            "Closed the connection that had waited longest for request headers (%.1f s), "
            "to make room at the connection limit",
            waited,
        )

    def _closing_for_room(self) -> None:
        self._disarm()
        self.closed_for_room = True
        self.overload.closing += 1

    def start_drain(self) -> None:
        """SIGTERM: answer the current request with Connection: close, and close an idle
        connection only after the grace period, when no request is on its way any more."""
        if self.draining:  # a second signal
            return
        self.draining = True
        self.mark_cycle()
        self.grace = self.loop.call_later(self.limits.drain_grace, self._end_grace)

    def mark_cycle(self) -> None:
        """While draining, make the request being answered close its connection, and say so
        in the response, so that the client sends nothing more on it."""
        cycle = self.owner.cycle
        if not self.draining or cycle is None or cycle.response_complete:
            return
        cycle.keep_alive = False
        if not cycle.response_started and CLOSE_HEADER not in cycle.default_headers:
            cycle.default_headers = [*cycle.default_headers, CLOSE_HEADER]

    def _end_grace(self) -> None:
        self.grace = None
        transport, cycle = self.owner.transport, self.owner.cycle
        if transport.is_closing() or (self.reading and self.started):
            return  # closed already, or a request is arriving: it is answered, then closed
        if cycle is None or cycle.response_complete:
            transport.close()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self, seconds: float) -> None:
        self.deadline = None
        self._close(
            f"request {self.reading} not received within {seconds:g} s",
            f"Closed a connection whose request {self.reading} did not arrive within %g s",
            seconds,
        )

    def _close(self, reply: str, line: str, seconds: float) -> None:
        """Close the connection; if part of a request came, say why with a 408 and log it."""
        transport, cycle = self.owner.transport, self.owner.cycle
        if transport.is_closing():
            return
        if self.started:
            # Say why, unless a response is already on the wire (it would be garbled).
            idle = cycle is None or cycle.response_complete
            if idle or (self.reading == "body" and not cycle.response_started):
                transport.write(raw_response(408, "Request Timeout", reply))
            log.info(line, seconds)
        transport.close()


class _Guarded:
    """What both parsers' guarded protocols share: framing and budget checks, connection
    cap and shedding, deadlines, drain, and the JSON 400.

    Mixed in before uvicorn's protocol class, whose methods `super()` reaches.
    """

    overload: ClassVar[Overload] = Overload(HttpLimits())
    app: Any
    loop: asyncio.AbstractEventLoop
    connections: Any
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = cast(Any, guard_request(cast(Any, self.app), self.overload))
        self.guard = ConnectionGuard(cast(Any, self), self.overload, self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if self.overload.at_cap(len(self.connections)) and not self.overload.shed_oldest():
            self.guard.refuse(len(self.connections) - 1 - self.overload.closing)
            return
        self.guard.expect_headers(started=False)

    def data_received(self, data: bytes) -> None:
        self.guard.count_header_bytes(len(data))
        super().data_received(data)  # type: ignore[misc]
        self.guard.limit_header_bytes()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        cycle = getattr(self, "cycle", None)
        idle = cycle is None or cycle.response_complete  # no pipelined request under way
        if idle and not self.transport.is_closing():
            self.guard.idle()

    def send_400_response(self, msg: str) -> None:
        """Refuse what the parser cannot read in the API's error shape, not uvicorn's text."""
        self.transport.write(INVALID_REQUEST)
        self.transport.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.guard.connection_lost()
        super().connection_lost(exc)  # type: ignore[misc]

    def shutdown(self) -> None:
        self.guard.start_drain()


class GuardedH11Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with read deadlines, a connection cap and a graceful drain."""

    def data_received(self, data: bytes) -> None:
        if self.guard.reading != "body":
            self.guard.expect_headers(started=True)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self.guard.expect_body()
        elif state is h11.IDLE and self.conn.trailing_data[0]:
            self.guard.expect_headers(started=True)  # part of the next request is in
        else:
            self.guard.request_received()
        self.guard.mark_cycle()


def _httptools_protocol() -> Type[asyncio.Protocol]:
    """Build the httptools variant; imported only when asked for, as httptools is optional."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol with the same guards as GuardedH11Protocol."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.guard.expect_headers(started=True)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self.guard.expect_body()
            self.guard.mark_cycle()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.guard.request_received()

    return GuardedHttpToolsProtocol


def protocol_class(
    parser: Parser, limits: HttpLimits, count: Callable[[str], None] = _count_nothing
) -> Type[asyncio.Protocol]:
    """Return uvicorn's protocol class for `parser`, guarded with these limits; `count` is
    called with a reason (pipeline.service.metrics.OVERLOAD_REASONS) for each refusal or closure
    under overload."""
    base = GuardedH11Protocol if parser == "h11" else _httptools_protocol()
    overload = Overload(limits, count)
    return type(f"{base.__name__}WithLimits", (base,), {"overload": overload})


class OverloadMetrics(Protocol):
    """What the server reports to the app's metrics (pipeline.metrics.ServiceMetrics)."""

    def overloaded(self, reason: str) -> None: ...

    def watch_body_bytes(self, held: Callable[[], float]) -> None: ...


def _overload_metrics(app: Any) -> Optional[OverloadMetrics]:
    """The app's metrics, if it has any that take the server's overload counts."""
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    if hasattr(metrics, "overloaded") and hasattr(metrics, "watch_body_bytes"):
        return cast(OverloadMetrics, metrics)
    return None


def available(module: str) -> bool:
    """Say whether an optional accelerator (uvloop, httptools) can be imported."""
    return importlib.util.find_spec(module) is not None


def serve(
    app: Any,
    host: str,
    port: int,
    limits: HttpLimits,
    parser: Parser,
    log_config: Dict[str, Any],
    access_log: bool = False,
) -> None:
    """Run uvicorn until SIGTERM or SIGINT, then drain.

    uvloop and httptools are requirements, but a hand-made environment may lack them: the
    service then runs on asyncio's loop and h11, and says so, rather than not starting.
    """
    loop = "uvloop" if available("uvloop") else "asyncio"
    if loop == "asyncio":
        log.warning("uvloop is not installed: running on asyncio's event loop (slower)")
    if parser == "httptools" and not available("httptools"):
        log.warning("httptools is not installed: parsing HTTP with h11 (slower)")
        parser = "h11"
    max_connections, backlog = fit_to_file_limit(limits.max_connections)
    if max_connections < limits.max_connections:
        log.warning(
            f"Connection limit lowered from {limits.max_connections} to {max_connections} to "
            "stay under the process's open-file limit (ulimit -n)"
        )
    limits = limits._replace(max_connections=max_connections)
    log.info(
        f"HTTP server: {parser} parser, {loop} event loop, access log "
        f"{'on' if access_log else 'off (TTD_ACCESS_LOG=1 turns it on)'}"
    )
    log.info(
        f"HTTP limits: headers within {limits.header_timeout:g} s, body within "
        f"{limits.body_timeout:g} s, keep-alive {limits.keep_alive_timeout} s, at most "
        f"{limits.max_connections} connections, drain grace {limits.drain_grace:g} s, "
        f"request bodies in memory at most {limits.body_budget / 2**20:g} MiB"
    )
    metrics = _overload_metrics(app)
    protocol = protocol_class(parser, limits, _count_nothing if metrics is None
                              else metrics.overloaded)
    if metrics is not None:
        budget = cast(Any, protocol).overload.budget
        metrics.watch_body_bytes(lambda: float(budget.held))
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol,
        loop=loop,
        log_config=log_config,
        access_log=access_log,
        backlog=backlog,
        timeout_keep_alive=limits.keep_alive_timeout,
        # Above MAX_HEADER_BYTES, so that the 431 comes from the guard with either parser.
        h11_max_incomplete_event_size=2 * MAX_HEADER_BYTES,
        timeout_graceful_shutdown=20,
    )
