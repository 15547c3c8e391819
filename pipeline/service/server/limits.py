"""The HTTP server's limits, and the connection cap fitted under the open-file limit."""
import resource
from typing import TYPE_CHECKING, NamedTuple, Tuple

from typing import Literal

if TYPE_CHECKING:  # not at run time: the server's internals tests run without pydantic
    from pipeline.settings import Settings

Parser = Literal["h11", "httptools"]
# File descriptors kept free for the process itself (logs, the store, S3 connections) when the
# connection cap is fitted under the file limit.
RESERVED_FILES = 64
MAX_BACKLOG = 2048  # uvicorn's default: asyncio accepts up to this many at once
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
    def from_settings(cls, settings: "Settings") -> "HttpLimits":
        return cls(
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            keep_alive_timeout=settings.http_keep_alive_timeout,
            max_connections=settings.http_max_connections,
            drain_grace=settings.http_drain_grace,
            body_budget=settings.http_body_budget_bytes,
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
