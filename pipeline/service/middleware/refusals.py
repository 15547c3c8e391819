"""Refusals made in front of the app, in the API's error shape, closing the connection."""
import json

from pipeline.service.middleware.asgi import CLOSE_HEADER, Header, Send


def error_body(status: int, message: str) -> bytes:
    """Return the API's error shape for a refusal made by the HTTP layer."""
    return json.dumps(
        {"detail": [{"loc": ["request"], "msg": message, "type": f"http_{status}"}]}
    ).encode()


async def send_closing(send: Send, status: int, body: bytes, *headers: Header) -> None:
    """Answer with `body` (JSON) and close the connection after it, so that whatever the
    client sends next, the rest of a refused body included, is never read as a request."""
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *headers, CLOSE_HEADER],
    })
    await send({"type": "http.response.body", "body": body})
