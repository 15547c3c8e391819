"""The service as a process under hostile or failing conditions: stalled clients, a flood of
connections at the file limit, request bodies beyond the memory budget, SIGTERM under
keep-alive load, and request smuggling.

Each test runs with both HTTP parsers uvicorn can use (h11, and httptools)."""
import json
import signal
import socket
import threading
import time
from typing import Dict, Iterator, List, NamedTuple, Optional

import httpx
import pytest

from pipeline import generate_dataset, train_model
from pipeline.service.app import API_PATH
from pipeline.registry.store import LocalStore
from tests.processes import Service, free_port, stage_env, start_service, stop_service

PARSERS = ["h11", "httptools"]
BODY = json.dumps({"product_code": "SKU001", "orders_placed": 112}).encode()
REQUEST = (
    f"POST {API_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(BODY)}\r\n\r\n"
).encode() + BODY


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = LocalStore(tmp_path_factory.mktemp("http") / "store")
    generate_dataset.main(store, rows=500, skus=3)
    train_model.main(store)
    return str(store.root)


# Each server's metrics port (a free one, not the default 8001), by its service port.
METRICS_PORTS: Dict[int, int] = {}


def _serve(
    store_root: str, parser: str, open_files: Optional[int] = None, **settings: str
) -> "tuple[Service, int]":
    port = free_port()
    METRICS_PORTS[port] = free_port()
    env = stage_env({
        "TTD_HTTP_PARSER": parser, "TTD_METRICS_PORT": str(METRICS_PORTS[port]),
        **{f"TTD_{k.upper()}": v for k, v in settings.items()},
    })
    service = start_service(
        ["-m", "pipeline.serve_model", store_root, "--port", str(port)],
        port,
        env,
        open_files=open_files,
    )
    return service, port


class Response(NamedTuple):
    status: int
    headers: Dict[str, str]
    body: bytes


def read_response(sock: socket.socket) -> Optional[Response]:
    """Read one HTTP response with a Content-Length; None if the connection ends first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return Response(int(lines[0].split()[1]), headers, rest[:length])


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Return all the server sends until it closes the connection (or the deadline passes)."""
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return data + b"<reset>"
        if not chunk:
            return data + b"<closed>"
        data += chunk
    return data


def _estimate_status(port: int) -> int:
    response = httpx.post(
        f"http://127.0.0.1:{port}{API_PATH}",
        json={"product_code": "SKU001", "orders_placed": 112},
        timeout=10,
    )
    return response.status_code


@pytest.fixture
def sockets() -> Iterator[List[socket.socket]]:
    opened: List[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _stall(port: int, sockets: List[socket.socket], count: int, data: bytes) -> None:
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(data)
        sockets.append(sock)


@pytest.mark.parametrize("parser", PARSERS)
def test_stalled_clients_are_dropped_in_bounded_time_and_the_service_keeps_answering(
    store_root: str, parser: str, sockets: List[socket.socket]
) -> None:
    service, port = _serve(
        store_root, parser, http_header_timeout="3", http_body_timeout="3",
        http_max_connections="40",
    )
    try:
        half_line = f"POST {API_PATH} HT".encode()
        half_body = REQUEST[: len(REQUEST) - 10]
        _stall(port, sockets, 25, half_line)
        _stall(port, sockets, 10, half_body)
        stalled_at = time.monotonic()
        assert _estimate_status(port) == 200  # answered while 35 connections stall
        # Every stalled connection is closed once its deadline (3 s) passes, with a 408.
        closed = [read_until_closed(sock, stalled_at + 15) for sock in sockets]
        elapsed = time.monotonic() - stalled_at
        assert all(c.startswith(b"HTTP/1.1 408") and c.endswith(b"<closed>") for c in closed), (
            closed[:3]
        )
        assert b"request headers not received within 3 s" in closed[0]
        assert b"request body not received within 3 s" in closed[-1]
        assert elapsed < 13, elapsed
        assert _estimate_status(port) == 200
    finally:
        output = stop_service(service)
    assert service.returncode == 0, output
    assert "Traceback" not in output
    assert len(output.splitlines()) < 80, output


def _metric(port: int, name: str) -> float:
    """Read one sample from /metrics on the metrics port of the server on `port`."""
    deadline = time.monotonic() + 10
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{METRICS_PORTS[port]}/metrics", timeout=10)
            if response.status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "no /metrics within 10 s"
        time.sleep(0.05)  # polling interval
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{response.text}")


def _error(response: Response) -> Dict[str, object]:
    """The one error of a refusal in the API's shape, checked to be JSON."""
    assert response.headers["content-type"] == "application/json", response
    detail = json.loads(response.body)["detail"]
    assert isinstance(detail, list) and len(detail) == 1, detail
    error: Dict[str, object] = detail[0]
    assert set(error) == {"loc", "msg", "type"}, error
    return error


@pytest.mark.parametrize("parser", PARSERS)
def test_at_the_connection_cap_stalled_connections_make_room_for_whole_requests(
    store_root: str, parser: str, sockets: List[socket.socket]
) -> None:
    # Deadlines far off: only the cap can close the stalled connections during the test.
    service, port = _serve(
        store_root, parser, http_header_timeout="60", http_max_connections="40"
    )
    try:
        _stall(port, sockets, 100, f"POST {API_PATH} HT".encode())
        # 100 stalled beyond a cap of 40: the oldest 60 were closed, each with a 408.
        oldest = [read_until_closed(sock, time.monotonic() + 10) for sock in sockets[:60]]
        assert all(r.startswith(b"HTTP/1.1 408") and r.endswith(b"<closed>") for r in oldest), (
            oldest[:3]
        )
        assert b"with the server at its connection limit" in oldest[0]
        # Each whole request is answered at once, while the newest stalled ones are held.
        started = time.monotonic()
        assert [_estimate_status(port) for _ in range(20)] == [200] * 20
        assert time.monotonic() - started < 10
        sockets[-1].setblocking(False)
        with pytest.raises(BlockingIOError):  # still open, nothing sent to it
            sockets[-1].recv(1)
        assert _metric(port, 'ttd_http_overload_total{reason="stalled_closed"}') >= 60
    finally:
        output = stop_service(service)
    assert service.returncode == 0, output
    assert "Traceback" not in output
    assert len(output.splitlines()) < 80, output


@pytest.mark.parametrize("parser", PARSERS)
def test_beyond_the_cap_with_no_connection_stalled_on_headers_a_new_one_gets_503(
    store_root: str, parser: str, sockets: List[socket.socket]
) -> None:
    service, port = _serve(store_root, parser, http_max_connections="20")
    try:
        # 20 requests whose headers are in and whose bodies are on their way: none is shed.
        _stall(port, sockets, 20, REQUEST[: len(REQUEST) - 10])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST)
            reply = read_response(sock)
        assert reply is not None and reply.status == 503, reply
        assert reply.headers["retry-after"] == "1"
        assert reply.headers["connection"] == "close"
        assert _error(reply)["type"] == "http_503"
        for sock in sockets:
            sock.sendall(REQUEST[len(REQUEST) - 10:])  # the bodies end: each is answered
            answer = read_response(sock)
            assert answer is not None and answer.status == 200, answer
        assert _metric(port, 'ttd_http_overload_total{reason="connection_cap"}') == 1
    finally:
        output = stop_service(service)
    assert "Refused a connection (503): 20 open, the limit is 20" in output


def _batch_head(length: Optional[int]) -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"POST {API_PATH}/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _batch_status(port: int) -> int:
    orders = [{"product_code": "SKU001", "orders_placed": n} for n in range(2000)]
    response = httpx.post(f"http://127.0.0.1:{port}{API_PATH}/batch", json={"orders": orders},
                          timeout=10)
    return response.status_code


@pytest.mark.parametrize("parser", PARSERS)
def test_while_bodies_fill_the_memory_budget_a_single_order_is_answered_and_a_batch_gets_503(
    store_root: str, parser: str, sockets: List[socket.socket]
) -> None:
    budget = 2 * 2 * 1024 * 1024  # room for two largest batch bodies
    service, port = _serve(store_root, parser, http_body_budget_bytes=str(budget),
                           http_body_timeout="3")
    try:
        assert _batch_status(port) == 200  # a batch under the budget: answered
        # Two batch bodies of 2 MiB on their way, most of each sent: the budget is full.
        _stall(port, sockets, 2, _batch_head(2 * 1024 * 1024) + b'{"orders": [' + b" " * 100_000)
        assert _metric(port, "ttd_http_request_body_bytes") == budget
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(_batch_head(100_000))  # refused before its body is sent
            refused = read_response(sock)
            assert read_until_closed(sock, time.monotonic() + 10) == b"<closed>"
        assert refused is not None and refused.status == 503, refused
        assert refused.headers["retry-after"] == "1"
        error = _error(refused)
        assert error["loc"] == ["request"] and error["type"] == "http_503"
        # A chunked body is counted as it arrives: past its first 4 KiB, refused too.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            chunk = b'{"orders": [' + b" " * 8000
            sock.sendall(_batch_head(None) + b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            chunked = read_response(sock)
        assert chunked is not None and chunked.status == 503, chunked
        # A single order (under 4 KiB) is always answered.
        assert [_estimate_status(port) for _ in range(5)] == [200] * 5
        assert _metric(port, 'ttd_http_overload_total{reason="body_budget"}') == 2
        # The budget comes back whether the client leaves or its body times out (408).
        sockets[0].close()
        timed_out = read_until_closed(sockets[1], time.monotonic() + 15)
        assert timed_out.startswith(b"HTTP/1.1 408"), timed_out
        deadline = time.monotonic() + 10
        while _metric(port, "ttd_http_request_body_bytes") != 0:
            assert time.monotonic() < deadline, "the budget was not released"
            time.sleep(0.05)  # polling interval
        assert _batch_status(port) == 200
    finally:
        output = stop_service(service)
    assert service.returncode == 0, output
    assert "Traceback" not in output
    assert "Refused a request body (503): 100000 bytes would pass the memory budget" in output


def test_a_flood_of_silent_connections_at_the_file_limit_is_shed_with_a_bounded_log(
    store_root: str, sockets: List[socket.socket]
) -> None:
    # A process allowed 256 open files, as a small pod, and 300 connections that send nothing:
    # the cap is fitted under the limit, so accept() never fails for want of descriptors, and
    # the oldest silent connections are closed to make room for new ones.
    service, port = _serve(store_root, "h11", open_files=256, http_header_timeout="6")
    try:
        _stall(port, sockets, 300, b"")
        assert _estimate_status(port) == 200  # answered while 144 silent connections are held
        deadline = time.monotonic() + 6 + 15
        replies = [read_until_closed(sock, deadline) for sock in sockets]
        assert all(r.endswith((b"<closed>", b"<reset>")) for r in replies), [
            r[:20] for r in replies if not r.endswith((b"<closed>", b"<reset>"))
        ]
        # Nothing was sent on them, so nothing is answered: closed, the oldest first.
        assert all(r in (b"<closed>", b"<reset>") for r in replies), replies[:3]
        assert _metric(port, 'ttd_http_overload_total{reason="stalled_closed"}') >= 150
    finally:
        output = stop_service(service)
    assert service.returncode == 0, output
    assert "Connection limit lowered from 1000 to 144" in output
    assert "Traceback" not in output
    assert "out of system resource" not in output
    assert len(output.splitlines()) < 80, output


class LoadResult(NamedTuple):
    answered: int
    closed_by_header: int  # responses that said Connection: close
    lost: int  # requests sent whose response never came
    refused: int  # connections refused before anything was sent


def _keep_alive_client(
    port: int, stop: threading.Event, progress: List[int], index: int, results: List[LoadResult]
) -> None:
    """Post estimates back to back on one keep-alive connection, reconnecting after a
    `Connection: close`, until a connection is refused or `stop` is set."""
    answered = closed = lost = refused = 0
    sock: Optional[socket.socket] = None
    deadline = time.monotonic() + 60
    for _ in range(100_000):
        if stop.is_set() or time.monotonic() > deadline:
            break
        if sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                refused += 1
                break
        try:
            sock.sendall(REQUEST)
        except OSError:
            refused += 1  # the server had closed it before the request went out
            sock.close()
            sock = None
            continue
        try:
            response = read_response(sock)
        except OSError:
            response = None
        if response is None:
            lost += 1
            sock.close()
            sock = None
            continue
        assert response.status == 200, response
        answered += 1
        progress[index] = answered
        if response.headers.get("connection", "").lower() == "close":
            closed += 1
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    results.append(LoadResult(answered, closed, lost, refused))


@pytest.mark.parametrize("parser", PARSERS)
def test_repeated_sigterms_under_keep_alive_load_lose_no_request_that_was_sent(
    store_root: str, parser: str
) -> None:
    for round_ in range(3):
        # A grace period with room for a client thread that a loaded machine runs late.
        service, port = _serve(store_root, parser, http_drain_grace="5")
        stop = threading.Event()
        progress = [0] * 16
        results: List[LoadResult] = []
        clients = [
            threading.Thread(target=_keep_alive_client, args=(port, stop, progress, i, results))
            for i in range(16)
        ]
        try:
            for client in clients:
                client.start()
            deadline = time.monotonic() + 30
            while min(progress) < 20 and time.monotonic() < deadline:  # every client under way
                time.sleep(0.05)  # polling interval
            assert min(progress) >= 20, progress
            service.send_signal(signal.SIGTERM)
            service.process.wait(timeout=30)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=30)
            output = stop_service(service)
        assert service.returncode == 0, output
        assert len(results) == 16
        assert sum(r.lost for r in results) == 0, (round_, results)
        assert all(r.answered > 0 for r in results), results
        # Every client was told to close rather than finding its connection gone.
        assert all(r.closed_by_header >= 1 for r in results), (round_, results)


SMUGGLED = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
AMBIGUOUS_FRAMINGS = [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    b"Content-Length: 0\r\nContent-Length: 5\r\n\r\n",
]


@pytest.mark.parametrize("parser", PARSERS)
def test_a_request_with_an_ambiguous_length_is_refused_and_nothing_after_it_runs(
    store_root: str, parser: str
) -> None:
    service, port = _serve(store_root, parser, http_keep_alive_timeout="30")
    replies = []
    try:
        for framing in AMBIGUOUS_FRAMINGS:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    f"POST {API_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\n".encode() + framing + SMUGGLED
                )
                # Closed at once: well before the keep-alive timeout (30 s) or this deadline.
                replies.append(read_until_closed(sock, time.monotonic() + 10))
    finally:
        output = stop_service(service)
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 400"), reply
        assert reply.lower().count(b"http/1.1 ") == 1, reply  # one response: nothing smuggled
        assert reply.endswith(b"<closed>"), reply
        # In the API's error shape, whichever layer refused it (the parser, or the guard).
        head, _, body = reply[: -len(b"<closed>")].partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower(), reply
        error = json.loads(body)["detail"][0]
        assert error["loc"] == ["request"] and error["type"] == "http_400", error
    assert "GET /health" not in output


@pytest.mark.parametrize("parser", PARSERS)
def test_headers_that_never_end_get_431_and_the_connection_is_closed(
    store_root: str, parser: str
) -> None:
    service, port = _serve(store_root, parser, http_header_timeout="60")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST {API_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ".encode())
            for _ in range(16):  # a header that goes on: past 16 KiB with the last of these
                sock.sendall(b"a" * 1024)
            reply = read_until_closed(sock, time.monotonic() + 10)
        assert _estimate_status(port) == 200
    finally:
        output = stop_service(service)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]
    assert reply.endswith(b"<closed>"), reply
    assert b'"type": "http_431"' in reply
    assert "Refused a request whose line and headers pass 16384 bytes (431, closed)" in output


@pytest.mark.parametrize("parser", PARSERS)
def test_a_request_the_parser_cannot_read_gets_a_json_400(store_root: str, parser: str) -> None:
    service, port = _serve(store_root, parser)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            reply = read_response(sock)
    finally:
        stop_service(service)
    assert reply is not None and reply.status == 400, reply
    assert _error(reply)["type"] == "http_400"


def test_by_default_the_service_parses_with_httptools_on_uvloop_and_logs_no_request(
    store_root: str,
) -> None:
    port = free_port()
    service = start_service(["-m", "pipeline.serve_model", store_root, "--port", str(port)], port)
    try:
        assert [_estimate_status(port) for _ in range(3)] == [200, 200, 200]
    finally:
        output = stop_service(service)
    assert "HTTP server: httptools parser, uvloop event loop, access log off" in output
    assert API_PATH not in output


def test_with_ttd_access_log_every_request_gets_a_line(store_root: str) -> None:
    service, port = _serve(store_root, "h11", access_log="1")
    try:
        assert [_estimate_status(port) for _ in range(3)] == [200, 200, 200]
    finally:
        output = stop_service(service)
    assert "HTTP server: h11 parser, uvloop event loop, access log on" in output
    assert output.count(f'"POST {API_PATH} HTTP/1.1" 200') == 3, output
