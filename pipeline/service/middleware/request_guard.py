"""Refuse requests that no client of this API sends, before any parsing happens.

Pure ASGI middleware: a body larger than a request needs gets 413 as soon as its size is
known (from Content-Length, or while it streams), and a body that is not declared JSON gets
415, so nothing large or foreign ever reaches the JSON parser. Each guarded path has its own
size limit.
"""
import json
from typing import Dict, Mapping

from pipeline.service.middleware.asgi import CLOSE_HEADER, ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 4096  # a request is under 200 bytes; 4 KiB leaves room for whitespace
# 10,000 orders take about 0.5 MB with short codes and 1.4 MB with 64-character codes
# pretty-printed; 2 MiB leaves room, and bounds what one connection can make the server hold.
MAX_BATCH_BODY_BYTES = 2 * 1024 * 1024


def declared_json(headers: Mapping[bytes, bytes]) -> bool:
    """Say whether the request declares its body as JSON (parameters such as charset aside)."""
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return media_type == b"application/json"


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": [{"loc": ["body"], "msg": message, "type": "request"}]})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), CLOSE_HEADER],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


class RequestGuard:
    """Check the size and declared type of request bodies on the given paths.

    `limits` maps each guarded path to the largest body it accepts, in bytes.
    """

    def __init__(self, app: ASGIApp, limits: Mapping[str, int]) -> None:
        self.app = app
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_bytes = self.limits.get(scope["path"]) if scope["type"] == "http" else None
        if max_bytes is None:
            await self.app(scope, receive, send)
            return
        headers: Dict[bytes, bytes] = dict(scope.get("headers", []))
        if scope["method"] == "POST" and not declared_json(headers):
            await _send_error(send, 415, "send the body as JSON (Content-Type: application/json)")
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await _send_error(send, 413, f"request body over {max_bytes} bytes")
            return

        received = 0
        responded = False

        async def counted_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes and not responded:
                    # Answer now and tell the app the client left: whatever it does next
                    # (FastAPI turns a broken body into a 400) is dropped by guarded_send.
                    await _send_error(send, 413, f"request body over {max_bytes} bytes")
                    responded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not responded:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)
