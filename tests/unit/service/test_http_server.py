import logging
import resource
import sys
from typing import List, Sequence, Tuple

import pytest

from pipeline.service.http_server import RepeatFilter, fit_to_file_limit, raw_response


def _records(filter_: RepeatFilter, messages: Sequence[Tuple[str, Tuple[str, ...]]]) -> List[str]:
    passed = []
    for msg, args in messages:
        record = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, args, None)
        if filter_.filter(record):
            passed.append(record.getMessage())
    return passed


def test_a_flood_of_one_log_line_is_cut_to_a_few_then_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(burst=5, window=10.0, clock=lambda: now[0])
    flood = [("Invalid HTTP request from %s", (f"10.0.0.{i % 250}",)) for i in range(10_000)]
    assert len(_records(repeats, flood)) == 5
    assert _records(repeats, [("Other line", ())]) == ["Other line"]  # other kinds still pass
    now[0] = 10.0
    assert _records(repeats, flood[:1]) == [
        "Invalid HTTP request from 10.0.0.0 (9995 more like this not logged)"
    ]


def test_a_failed_accept_is_logged_as_one_line_without_its_traceback() -> None:
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1,
        "socket.accept() out of system resource\nsocket: <socket>", None, exc_info,
    )
    assert RepeatFilter().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert line == "socket.accept() out of system resource: [Errno 24] Too many open files"


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
