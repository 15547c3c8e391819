"""One connection's read deadlines, header limit, place at the cap and drain.

The guard learns of a connection's bytes from the protocol (protocol.py) and of its
requests from the ASGI layer (pipeline/service/middleware/connection_state.py). `reading` is
which part of a request is awaited: "headers" from the connection's opening or the first
byte of a request, "body" once its headers have reached the app and they announce a body,
None once the app has read it whole (or there is none). A connection must send a request's
headers within `header_timeout`, then its body within `body_timeout`; otherwise it gets 408
and is closed. While its headers are awaited, or while it is idle between keep-alive
requests, it waits in `overload.waiting`, to be shed if the cap is reached.
"""
import asyncio
from typing import Optional

from pipeline.logs import configure_logger
from pipeline.service.log_filter import filtered_logger
from pipeline.service.server.header_block import HeaderBlock
from pipeline.service.server.limits import MAX_HEADER_BYTES
from pipeline.service.server.overload import Overload
from pipeline.service.server.responses import HEADERS_TOO_LARGE, SERVICE_UNAVAILABLE
from pipeline.service.server.responses import raw_response

log = configure_logger(__name__)
filtered_logger(__name__)  # the closures an attack can repeat are rate-limited


class ConnectionGuard:
    """The state of one connection, as its deadlines, the cap and the drain need it."""

    def __init__(
        self, transport: asyncio.Transport, overload: Overload, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.transport = transport
        self.overload = overload
        self.limits = overload.limits
        self.loop = loop
        self.reading: Optional[str] = None
        self.started = False  # some bytes of the awaited request have arrived
        self.header = HeaderBlock()
        self.busy = False  # a request is with the app, its response not complete
        self.responding = False  # that response has started
        self.pipelined = False  # bytes of a next request came while the app was busy
        self.waiting_since = 0.0
        self.deadline: Optional[asyncio.TimerHandle] = None
        self.draining = False
        self.grace: Optional[asyncio.TimerHandle] = None
        self.closed_for_room = False  # by the cap or shedding: counted in overload.closing
        self.lost = False

    # The connection and its bytes, from the protocol.

    def admit(self) -> bool:
        """Count the new connection; at the cap, shed the one that has waited longest for
        request headers, or, if none is, refuse this one (503) and say False."""
        self.overload.open += 1
        if self.overload.at_cap() and not self.overload.shed_oldest():
            self._refuse_at_cap()
            return False
        self._expect_headers(started=False)
        return True

    def received(self, data: bytes) -> bool:
        """Note bytes from the client; say False if they were refused (431, closed) and must
        not reach the parser."""
        if self.reading is None:
            if self.busy:
                self.pipelined = True
                return True
            self._expect_headers(started=True)  # the next request on a kept-alive connection
        if self.reading != "headers":
            return True
        self.started = True
        if self.header.add(data) <= MAX_HEADER_BYTES:
            if self.header.ended:  # the parser hands the request to the app: not sheddable
                self.overload.waiting.pop(self, None)
            return True
        self.answer_and_close(HEADERS_TOO_LARGE)
        log.warning("Refused a request whose line and headers pass %d bytes (431, closed)",
                    MAX_HEADER_BYTES)
        return False

    def answer_and_close(self, response: bytes) -> None:
        """Answer with a whole `response` of the server's own and close (431, the parser's
        400)."""
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def connection_lost(self) -> None:
        self.lost = True
        self.overload.open -= 1
        self.overload.waiting.pop(self, None)
        if self.closed_for_room:
            self.overload.closing -= 1
            self.closed_for_room = False
        self._disarm()
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None

    # The requests, from the ASGI layer (middleware.connection_state.ConnectionEvents).

    def request_started(self, has_body: bool) -> None:
        """A request's headers are in and the app has it; its body is awaited if it has one."""
        if self.lost:
            return
        self.busy, self.responding = True, False
        self.overload.waiting.pop(self, None)
        if has_body:
            self.reading, self.started = "body", True
            self._arm(self.limits.body_timeout)
        else:
            self._request_received()

    def body_received(self) -> None:
        if self.reading == "body":
            self._request_received()

    def response_started(self) -> None:
        self.responding = True

    def response_complete(self) -> None:
        """The response is written: the connection waits for the next request, unless it
        is closing (a drain's grace that has ended closes it now)."""
        self.busy = False
        if self.lost or self.transport.is_closing():
            return
        if self.draining and self.grace is None:
            self.transport.close()
        elif self.pipelined:
            self.pipelined = False
            self._expect_headers(started=True)  # part of the next request is in
        elif self.reading is None:
            self._wait()  # idle: uvicorn's keep-alive timeout closes it if nothing comes

    # The cap.

    def sheddable(self) -> bool:
        """Say whether this waiting connection can be closed to make room (not closing
        already, and not answering a pipelined request)."""
        return not self.transport.is_closing() and not self.busy

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

    def _refuse_at_cap(self) -> None:
        """Answer 503 and close at once: the cap is reached and no connection can be shed."""
        open_now = self.overload.open - 1 - self.overload.closing
        self._closing_for_room()
        self.transport.write(SERVICE_UNAVAILABLE)
        self.transport.close()
        self.overload.count("connection_cap")
        log.warning(
            "Refused a connection (503): %d open, the limit is %d (TTD_HTTP_MAX_CONNECTIONS), "
            "none waiting for request headers",
            open_now,
            self.limits.max_connections,
        )

    def _closing_for_room(self) -> None:
        self._disarm()
        self.closed_for_room = True
        self.overload.closing += 1

    # The drain.

    def start_drain(self) -> None:
        """SIGTERM: from now on every response says Connection: close (connection_state); an
        idle connection is closed only after the grace period, when no request is on its way
        any more."""
        if self.draining:  # a second signal
            return
        self.draining = True
        self.grace = self.loop.call_later(self.limits.drain_grace, self._end_grace)

    def _end_grace(self) -> None:
        self.grace = None
        if self.transport.is_closing() or self.busy or (self.reading and self.started):
            return  # closed already, or a request is under way: it is answered, then closed
        self.transport.close()

    # Deadlines.

    def _expect_headers(self, started: bool) -> None:
        """A request is due (`started` False: the connection just opened) or has begun."""
        if self.reading == "headers":
            self.started = self.started or started
            return
        self.reading, self.started, self.header = "headers", started, HeaderBlock()
        self._wait()
        self._arm(self.limits.header_timeout)

    def _request_received(self) -> None:
        self.reading, self.started = None, False
        self._disarm()

    def _wait(self) -> None:
        self.waiting_since = self.loop.time()
        self.overload.waiting[self] = None
        self.overload.waiting.move_to_end(self)

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
        if self.transport.is_closing():
            return
        if self.started:
            # Say why, unless a response is on the wire (it would be garbled).
            if not self.busy or (self.reading == "body" and not self.responding):
                self.transport.write(raw_response(408, "Request Timeout", reply))
            log.info(line, seconds)
        self.transport.close()
