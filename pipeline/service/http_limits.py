"""The HTTP server's limits and canned refusals, and the rate limit on repeated log lines.

Refusals the HTTP layer makes itself (before the app runs) are raw bytes in the API's JSON
shape; log lines an attacker can repeat pass through RepeatFilter.
"""
import json
import logging
import resource
import time
from typing import (
    Callable,
    Dict,
    List,
    NamedTuple,
    Optional,
    Tuple,
)

from typing_extensions import Literal

from pipeline.service.http_guards import (
    MAX_BODY_BYTES,
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
