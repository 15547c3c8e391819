"""The HTTP server: uvicorn, with limits that hold against slow clients, floods and shutdowns.

uvicorn on its own holds a connection that sends half a request forever, accepts connections
until the process runs out of file descriptors (then asyncio logs a traceback per failed
accept), closes idle keep-alive connections at SIGTERM while a request may be on its way to
them, and with h11 runs a request that has both Content-Length and Transfer-Encoding. Both of
its HTTP protocol classes (h11 and httptools) are subclassed here, the same way:

- a connection must send a request's headers within `header_timeout` of opening (or of the
  request's first byte), then its body within `body_timeout`; otherwise it gets 408 and is
  closed;
- beyond `max_connections` open at once (kept below the file limit), a new connection gets 503
  and is closed at once;
- on SIGTERM, every response says `Connection: close`, and an idle keep-alive connection stays
  open for `drain_grace` seconds, so that a request already on its way is still answered;
- a request with both Content-Length and Transfer-Encoding, or two Content-Lengths, gets 400
  and its connection is closed (RFC 9112, section 6.1), before the application sees it.

Repeated log lines (asyncio's failed accepts, uvicorn's warnings, the closures above) are
rate-limited by RepeatFilter, so an attack cannot flood the log.
"""
import asyncio
import importlib.util
import json
import logging
import resource
import time
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    List,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    Type,
    cast,
)

import h11
import uvicorn
from typing_extensions import Literal, Protocol
from uvicorn.protocols.http.h11_impl import H11Protocol

from pipeline.service.http_guards import ASGIApp, Receive, Scope, Send
from pipeline.logs import configure_logger
from pipeline.settings import Settings

log = configure_logger(__name__)

Parser = Literal["h11", "httptools"]
CLOSE_HEADER = (b"connection", b"close")
# File descriptors kept free for the process itself (logs, the store, S3 connections) when the
# connection cap is fitted under the file limit.
RESERVED_FILES = 64
MAX_BACKLOG = 2048  # uvicorn's default: asyncio accepts up to this many at once


class HttpLimits(NamedTuple):
    """How long a client may take, how many may connect, and how long a drain waits."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 1000
    drain_grace: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "HttpLimits":
        return cls(
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            keep_alive_timeout=settings.http_keep_alive_timeout,
            max_connections=settings.http_max_connections,
            drain_grace=settings.http_drain_grace,
        )


def raw_response(status: int, reason: str, message: str) -> bytes:
    """Return a whole HTTP response that closes the connection, in the API's error shape."""
    body = json.dumps(
        {"detail": [{"loc": ["request"], "msg": message, "type": f"http_{status}"}]}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


SERVICE_UNAVAILABLE = raw_response(
    503, "Service Unavailable", "too many connections open: try again shortly"
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


def refuse_ambiguous_framing(app: ASGIApp) -> ASGIApp:
    """Answer 400 and close when a request's body length is ambiguous (RFC 9112, 6.1).

    With both Content-Length and Transfer-Encoding, a proxy in front and this server may cut
    the body in different places, and the bytes after it would run as a second, smuggled
    request. Closing the connection after the 400 means those bytes are never read.
    """

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            names = [name.lower() for name, _ in scope.get("headers", [])]
            lengths = names.count(b"content-length")
            if lengths > 1 or (lengths and b"transfer-encoding" in names):
                log.warning("Refused a request with an ambiguous body length (400, closed)")
                message = (
                    "a request may carry Content-Length or Transfer-Encoding, not both, "
                    "and Content-Length once"
                )
                body = json.dumps(
                    {"detail": [{"loc": ["request"], "msg": message, "type": "http_400"}]}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"application/json"), CLOSE_HEADER],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


class _Owner(Protocol):
    """What ConnectionGuard needs of the protocol object it guards."""

    transport: asyncio.Transport
    cycle: Any  # the parser's RequestResponseCycle: the request being answered, if any


class ConnectionGuard:
    """One connection's read deadlines and drain, shared by both protocol classes.

    `reading` is which part of a request is awaited: "headers" from the connection's opening
    or the request's first byte, "body" once its headers are in, None once it is whole.
    """

    def __init__(
        self, owner: _Owner, limits: HttpLimits, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.owner = owner
        self.limits = limits
        self.loop = loop
        self.reading: Optional[str] = None
        self.started = False  # some bytes of the awaited request have arrived
        self.deadline: Optional[asyncio.TimerHandle] = None
        self.draining = False
        self.grace: Optional[asyncio.TimerHandle] = None

    def expect_headers(self, started: bool) -> None:
        """A request is due (`started` False: the connection just opened) or has begun."""
        if self.reading == "headers":
            self.started = self.started or started
            return
        self.reading, self.started = "headers", started
        self._arm(self.limits.header_timeout)

    def expect_body(self) -> None:
        if self.reading != "body":
            self.reading, self.started = "body", True
            self._arm(self.limits.body_timeout)

    def request_received(self) -> None:
        self.reading, self.started = None, False
        self._disarm()

    def connection_lost(self) -> None:
        self._disarm()
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None

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
        transport, cycle = self.owner.transport, self.owner.cycle
        if transport.is_closing():
            return
        if self.started:
            # Say why, unless a response is already on the wire (it would be garbled).
            idle = cycle is None or cycle.response_complete
            if idle or (self.reading == "body" and not cycle.response_started):
                transport.write(
                    raw_response(
                        408,
                        "Request Timeout",
                        f"request {self.reading} not received within {seconds:g} s",
                    )
                )
            log.info(
                "Closed a connection whose request %s did not arrive within %g s",
                self.reading,
                seconds,
            )
        transport.close()


def _refuse_over_limit(
    connections: Set[Any], transport: asyncio.Transport, limits: HttpLimits
) -> bool:
    """Answer 503 and close a connection beyond the cap, before reading anything from it."""
    if len(connections) <= limits.max_connections:
        return False
    transport.write(SERVICE_UNAVAILABLE)
    transport.close()
    log.warning(
        "Refused a connection (503): %d open, the limit is %d (TTD_HTTP_MAX_CONNECTIONS)",
        len(connections) - 1,
        limits.max_connections,
    )
    return True


class _Guarded:
    """What both parsers' guarded protocols share: framing check, connection cap, guard.

    Mixed in before uvicorn's protocol class, whose methods `super()` reaches.
    """

    limits: ClassVar[HttpLimits] = HttpLimits()
    app: Any
    loop: asyncio.AbstractEventLoop
    connections: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = cast(Any, refuse_ambiguous_framing(cast(Any, self.app)))
        self.guard = ConnectionGuard(cast(Any, self), self.limits, self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if not _refuse_over_limit(self.connections, cast(asyncio.Transport, transport),
                                  self.limits):
            self.guard.expect_headers(started=False)

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


def protocol_class(parser: Parser, limits: HttpLimits) -> Type[asyncio.Protocol]:
    """Return uvicorn's protocol class for `parser`, guarded with these limits."""
    base = GuardedH11Protocol if parser == "h11" else _httptools_protocol()
    return type(f"{base.__name__}WithLimits", (base,), {"limits": limits})


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
        f"{limits.max_connections} connections, drain grace {limits.drain_grace:g} s"
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol_class(parser, limits),
        loop=loop,
        log_config=log_config,
        access_log=access_log,
        backlog=backlog,
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=20,
    )
