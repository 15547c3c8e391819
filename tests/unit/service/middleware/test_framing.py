import json
from typing import Any, List

import pytest

from pipeline.service.middleware.asgi import Header
from pipeline.service.middleware.framing import AmbiguousLengthGuard
from tests.unit.service.middleware.asgi_client import JSON, Client, run

CHUNKED = (b"transfer-encoding", b"chunked")


def _answered() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


@pytest.mark.parametrize("framing", [
    [(b"content-length", b"5"), CHUNKED],
    [CHUNKED, (b"content-length", b"5")],
    [(b"content-length", b"0"), (b"content-length", b"5")],
])
def test_a_request_with_two_body_lengths_gets_400_in_the_api_shape_and_is_closed(
    framing: List[Header],
) -> None:
    client, _ = run(AmbiguousLengthGuard(_answered()), [JSON, *framing], Client([b"0"]))
    assert client.status == 400 and client.headers[b"connection"] == b"close"
    error = json.loads(client.sent[1]["body"])["detail"][0]
    assert error["loc"] == ["request"] and error["type"] == "http_400"


@pytest.mark.parametrize("framing", [[(b"content-length", b"5")], [CHUNKED], []])
def test_a_request_with_one_body_length_reaches_the_app(framing: List[Header]) -> None:
    client, _ = run(AmbiguousLengthGuard(_answered()), [JSON, *framing], Client([b"{}"]))
    assert client.status == 200
