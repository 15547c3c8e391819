"""A rolling update sends SIGTERM: the server must stop accepting, finish what is in flight,
and exit 0, so no customer request is dropped."""
import json
import signal
import socket
import time
from pathlib import Path

from pipeline import generate_dataset, train_model
from pipeline.registry.store import LocalStore
from tests.processes import free_port, start_service, stop_service


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    generate_dataset.main(store, rows=500, skus=3)
    train_model.main(store)
    port = free_port()
    service = start_service(
        ["-m", "pipeline.serve_model", str(store.root), "--port", str(port)], port
    )
    body = json.dumps({"product_code": "SKU001", "orders_placed": 112}).encode()
    head = (
        f"POST /api/v0.1/time_to_dispatch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    in_flight = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        in_flight.sendall(head + body[:10])  # the request has started, its body is not done
        service.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while not _refuses_connections(port):  # wait until the server has begun shutting down
            assert time.monotonic() < deadline, "server kept accepting after SIGTERM"
            time.sleep(0.05)  # polling interval
        assert service.poll() is None, "server exited with a request in flight"
        in_flight.sendall(body[10:])
        response = b""
        while not response.endswith(b"}"):
            chunk = in_flight.recv(4096)
            if not chunk:
                break
            response += chunk
    finally:
        in_flight.close()
    output = stop_service(service)
    assert response.startswith(b"HTTP/1.1 200"), response
    assert b'"est_hours_to_dispatch"' in response
    assert service.returncode == 0, output
    assert "Stopped by SIGTERM" in output
