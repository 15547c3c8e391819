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
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    Optional,
    Type,
    cast,
)

import h11
import uvicorn
from typing_extensions import Protocol
from uvicorn.protocols.http.h11_impl import H11Protocol

from pipeline.logs import configure_logger

from pipeline.service.http_limits import (
    CLOSE_HEADER,
    HEADERS_TOO_LARGE,
    INVALID_REQUEST,
    MAX_HEADER_BYTES,
    SERVICE_UNAVAILABLE,
    HttpLimits,
    Parser,
    filtered_logger,
    fit_to_file_limit,
    raw_response,
)
from pipeline.service.overload import Overload, _count_nothing, guard_request

log = configure_logger(__name__)
filtered_logger(__name__)  # the closures an attack can repeat are rate-limited


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
