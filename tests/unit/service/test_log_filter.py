import logging
import sys
from typing import List, Sequence, Tuple

from pipeline.service.log_filter import RepeatFilter


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
