import resource
from typing import Tuple

import pytest

from pipeline.service.server.limits import fit_to_file_limit
from pipeline.service.server.responses import raw_response


@pytest.mark.parametrize(
    "soft, wanted, expected",
    [
        (256, 1000, (144, 48)),  # (256 - 64 reserved) = 192: backlog 48, connections 144
        (1024, 1000, (720, 240)),
        (1_048_576, 1000, (1000, 2048)),  # a container's usual limit: the setting holds
        (1_048_576, 50, (50, 2048)),
    ],
)
def test_the_connection_cap_and_backlog_fit_under_the_file_limit(
    monkeypatch: pytest.MonkeyPatch, soft: int, wanted: int, expected: Tuple[int, int]
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, soft))
    cap, backlog = fit_to_file_limit(wanted)
    assert (cap, backlog) == expected
    assert cap + backlog + 64 <= soft


def test_raw_responses_have_the_api_error_shape_and_close() -> None:
    response = raw_response(408, "Request Timeout", "request headers not received within 10 s")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
    assert body.startswith(b'{"detail": [{"loc": ["request"], "msg": "request headers not')
