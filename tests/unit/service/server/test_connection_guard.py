"""A connection's deadlines, header limit, place at the cap and drain, on a clock the test
moves (the same guards run against real clients in tests/functional/test_http_server.py)."""
from pipeline.service.server.limits import MAX_HEADER_BYTES
from tests.unit.service.server.fakes import Server

HEAD = b"POST /api HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"


def test_a_connection_that_stalls_in_its_request_line_gets_408_at_the_header_deadline() -> None:
    server = Server(header_timeout=10)
    guard, transport = server.connect()
    assert guard.received(b"POST /api HT")
    server.loop.advance(9.9)
    assert not transport.closed
    server.loop.advance(0.1)
    assert transport.written.startswith(b"HTTP/1.1 408") and transport.closed
    assert b"request headers not received within 10 s" in transport.written


def test_a_connection_that_sends_nothing_is_closed_without_a_reply() -> None:
    server = Server(header_timeout=10)
    _, transport = server.connect()
    server.loop.advance(10)
    assert transport.closed and transport.written == b""


def test_a_body_that_stalls_gets_408_at_the_body_deadline_counted_from_its_headers() -> None:
    server = Server(header_timeout=10, body_timeout=5)
    guard, transport = server.connect()
    server.loop.advance(8)
    guard.received(HEAD + b"{")
    guard.request_started(has_body=True)
    server.loop.advance(4.9)
    assert not transport.closed
    server.loop.advance(0.1)
    assert b"request body not received within 5 s" in transport.written and transport.closed


def test_a_request_answered_in_time_leaves_the_connection_open_and_idle() -> None:
    server = Server(header_timeout=10, body_timeout=5)
    guard, transport = server.connect()
    guard.received(HEAD + b"{}")
    guard.request_started(has_body=True)
    guard.body_received()
    guard.response_started()
    guard.response_complete()
    server.loop.advance(60)  # uvicorn's keep-alive timeout closes an idle one, not the guard
    assert not transport.closed and list(server.overload.waiting) == [guard]


def test_line_and_headers_past_16_kib_get_431_and_never_reach_the_parser() -> None:
    server = Server()
    guard, transport = server.connect()
    assert guard.received(b"POST /api HTTP/1.1\r\nX-Pad: ")
    passed = [guard.received(b"a" * 1024) for _ in range(16)]
    assert passed == [True] * 15 + [False]
    assert transport.written.startswith(b"HTTP/1.1 431") and transport.closed
    assert str(MAX_HEADER_BYTES).encode() in transport.written


def test_a_large_body_read_with_its_headers_is_not_counted_as_headers() -> None:
    server = Server()
    guard, transport = server.connect()
    assert guard.received(HEAD + b"x" * 65536)
    assert guard.received(b"x" * 65536)  # before the app has taken the request
    assert not transport.closed


def test_at_the_cap_the_connection_waiting_longest_for_headers_makes_room() -> None:
    server = Server(max_connections=2)
    oldest, oldest_transport = server.connect()
    oldest.received(b"POST /api HT")
    server.loop.advance(1)
    busy, busy_transport = server.connect()
    busy.received(HEAD)  # its headers are in: it is not shed
    server.loop.advance(1)
    _, newest_transport = server.connect()
    assert oldest_transport.written.startswith(b"HTTP/1.1 408") and oldest_transport.closed
    assert b"with the server at its connection limit" in oldest_transport.written
    assert not busy_transport.closed and not newest_transport.closed
    assert server.counted == ["stalled_closed"]


def test_at_the_cap_with_no_connection_waiting_for_headers_a_new_one_gets_503() -> None:
    server = Server(max_connections=1)
    guard, _ = server.connect()
    guard.received(HEAD)
    guard.request_started(has_body=True)
    refused, transport = server.connect()
    assert transport.written.startswith(b"HTTP/1.1 503") and transport.closed
    assert b"retry-after: 1" in transport.written
    assert server.counted == ["connection_cap"]
    refused.connection_lost()
    assert server.overload.open == 1 and server.overload.closing == 0


def test_on_sigterm_an_idle_connection_stays_open_for_the_grace_then_closes() -> None:
    server = Server(drain_grace=2)
    guard, transport = server.connect()
    guard.received(HEAD + b"{}")
    guard.request_started(has_body=True)
    guard.body_received()
    guard.response_complete()
    guard.start_drain()
    server.loop.advance(1.9)
    assert guard.draining and not transport.closed
    server.loop.advance(0.1)
    assert transport.closed and transport.written == b""


def test_a_request_on_its_way_at_the_end_of_the_grace_is_still_answered() -> None:
    server = Server(drain_grace=2)
    guard, transport = server.connect()
    guard.start_drain()
    server.loop.advance(1)
    guard.received(HEAD)  # arriving
    server.loop.advance(1)
    assert not transport.closed  # the grace ended with a request under way
    guard.request_started(has_body=True)
    guard.body_received()
    guard.response_started()  # says Connection: close (connection_state): uvicorn closes it
    transport.close()
    guard.response_complete()
    assert transport.written == b""


def test_a_response_started_before_sigterm_and_done_after_the_grace_closes_its_connection() -> None:
    server = Server(drain_grace=2)
    guard, transport = server.connect()
    guard.received(HEAD + b"{}")
    guard.request_started(has_body=True)
    guard.body_received()
    guard.response_started()
    guard.start_drain()
    server.loop.advance(3)
    assert not transport.closed
    guard.response_complete()
    assert transport.closed
