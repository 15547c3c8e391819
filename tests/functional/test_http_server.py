"""The service as a process under hostile or failing conditions: stalled clients, a flood of
connections at the file limit, SIGTERM under keep-alive load, and request smuggling.

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


def _serve(
    store_root: str, parser: str, open_files: Optional[int] = None, **settings: str
) -> "tuple[Service, int]":
    port = free_port()
    env = stage_env(
        {"TTD_HTTP_PARSER": parser, **{f"TTD_{k.upper()}": v for k, v in settings.items()}}
    )
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
        over: List[socket.socket] = []
        _stall(port, over, 20, half_line)  # 55 connections: beyond the cap of 40
        deadline = time.monotonic() + 10
        replies = [read_until_closed(sock, deadline) for sock in over]
        for sock in over:
            sock.close()
        refused = [r for r in replies if r.startswith(b"HTTP/1.1 503")]
        assert len(refused) >= 14, replies
        # Closed at once (reset, as the half line it sent was never read).
        assert all(r.endswith((b"<closed>", b"<reset>")) for r in refused), refused
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


def test_a_flood_of_silent_connections_at_the_file_limit_gets_503s_and_a_bounded_log(
    store_root: str, sockets: List[socket.socket]
) -> None:
    # A process allowed 256 open files, as a small pod, and 300 connections that send nothing:
    # the cap is fitted under the limit, so accept() never fails for want of descriptors.
    service, port = _serve(store_root, "h11", open_files=256, http_header_timeout="6")
    try:
        _stall(port, sockets, 300, b"")
        deadline = time.monotonic() + 6 + 15
        replies = [read_until_closed(sock, deadline) for sock in sockets]
        assert all(r.endswith((b"<closed>", b"<reset>")) for r in replies), [
            r[:20] for r in replies if not r.endswith((b"<closed>", b"<reset>"))
        ]
        refused = [r for r in replies if r.startswith(b"HTTP/1.1 503")]
        assert len(refused) >= 50, len(refused)
        assert _estimate_status(port) == 200
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
    assert "GET /health" not in output


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
