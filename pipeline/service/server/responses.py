"""Whole HTTP responses the server writes to a connection itself, before or instead of the
app (408, 431, 503 at the cap, the parser's 400), in the API's error shape, each closing it."""
from typing import Optional

from pipeline.service.middleware.refusals import error_body
from pipeline.service.server.limits import MAX_HEADER_BYTES


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
