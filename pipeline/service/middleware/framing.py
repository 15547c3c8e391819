"""Refuse a request whose body length is ambiguous, before the app sees it.

A request with both Content-Length and Transfer-Encoding, or two Content-Lengths, gets 400
(RFC 9112, 6.1): a proxy in front and this server may cut the body in different places, and
the bytes after it would run as a second, smuggled request. Closing the connection after the
400 means those bytes are never read. Both of uvicorn's parsers refuse such requests
themselves today; this holds if one stops doing so.
"""
from typing import Iterable

from pipeline.logs import configure_logger
from pipeline.service.log_filter import filtered_logger
from pipeline.service.middleware.asgi import ASGIApp, Header, Receive, Scope, Send
from pipeline.service.middleware.refusals import error_body, send_closing

log = configure_logger(__name__)
filtered_logger(__name__)  # a client can repeat the refusal at will

AMBIGUOUS = error_body(
    400,
    "a request may carry Content-Length or Transfer-Encoding, not both, and Content-Length once",
)


def ambiguous_length(headers: Iterable[Header]) -> bool:
    """Say whether a request's headers give its body two lengths (both parsers give
    lower-case names)."""
    lengths = 0
    chunked = False
    for name, _ in headers:
        if name == b"content-length":
            lengths += 1
        elif name == b"transfer-encoding":
            chunked = True
    return lengths > 1 or (lengths == 1 and chunked)


class AmbiguousLengthGuard:
    """Answer 400 and close to a request with two body lengths; pass every other one on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ambiguous_length(scope["headers"]):
            log.warning("Refused a request with an ambiguous body length (400, closed)")
            await send_closing(send, 400, AMBIGUOUS)
            return
        await self.app(scope, receive, send)
