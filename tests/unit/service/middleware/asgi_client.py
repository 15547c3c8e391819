"""An ASGI server's side of one request, for testing a middleware without a server."""
import asyncio
from typing import Any, Dict, List, MutableMapping, Optional, Sequence, Tuple

from pipeline.service.middleware.asgi import ASGIApp, Header

JSON: Header = (b"content-type", b"application/json")


def request(headers: List[Header]) -> Dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/", "headers": headers}


class Client:
    """The body in chunks, what was sent back, and whether the client leaves after its
    last chunk."""

    def __init__(self, chunks: Sequence[bytes], leaves: bool = False) -> None:
        self.chunks = list(chunks)
        self.leaves = leaves
        self.sent: List[Dict[str, Any]] = []

    async def receive(self) -> Dict[str, Any]:
        if not self.chunks:
            return {"type": "http.disconnect"}
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks) or self.leaves}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))

    @property
    def status(self) -> Optional[int]:
        starts = [m["status"] for m in self.sent if m["type"] == "http.response.start"]
        return starts[0] if starts else None

    @property
    def headers(self) -> Dict[bytes, bytes]:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(starts[0]["headers"]) if starts else {}


def run(middleware: ASGIApp, headers: List[Header], client: Client) -> Tuple[Client, bool]:
    """Run `middleware` on one request; say whether it raised (the app behind failed)."""
    async def one_request() -> None:
        await middleware(request(headers), client.receive, client.send)

    try:
        asyncio.run(one_request())
    except RuntimeError:
        return client, True
    return client, False
