"""Two overload probes a hostile client could try, and what ordinary clients get meanwhile.

Run: python benchmarks/overload.py [--parser httptools] [--before DIR]
Trains a small model into a scratch store, then, each probe on a fresh server process (its
defaults, so the memory budget, the caps and the deadlines are the shipped ones):

1. bodies in flight: 600 connections each send the headers and all but the last byte of a
   2 MiB batch body (within the limit), and hold; meanwhile 20 ordinary single-order requests
   are sent, one every 0.25 s. Prints the server's peak RSS (VmHWM) and how many of the 20
   were answered 200. Targets: peak RSS <= 300 MB, >= 19 of 20 answered.
2. stalled connections: 3,000 connections each send half a request line and stall; right
   after, 20 ordinary requests, one after another. Prints how many were answered 200 (and
   the slowest), how long until the server had closed every stalled connection, how it
   closed them, and how many lines it logged. Targets: 20 of 20 answered within 3 s each,
   every stalled connection closed within 30 s, under 1,000 log lines.

`--before DIR` runs the same probes against the service in DIR too (another checkout, e.g.
`git worktree add /tmp/before main~1`), so the figures come side by side from one run.
Loopback only; every loop is bounded in count and time. The benchmark raises its own file
limit (RLIMIT_NOFILE, up to the hard limit) to hold 3,000 sockets.
"""
import argparse
import json
import os
import resource
import selectors
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import generate_dataset, train_model  # noqa: E402
from pipeline.registry.store import LocalStore  # noqa: E402
from tests.processes import Service, free_port, stage_env, start_service, stop_service  # noqa: E402

API = "/api/v0.1/time_to_dispatch"
BATCH_API = "/api/v0.1/time_to_dispatch/batch"
BATCH_BYTES = 2 * 1024 * 1024  # the batch endpoint's limit: within it
BODY_CONNECTIONS = 600
STALLED_CONNECTIONS = 3000
ORDINARY = 20
ORDINARY_TIMEOUT = 3.0
CLOSE_WITHIN = 30.0
MAX_RSS_MB = 300
MAX_LOG_LINES = 1000
METRICS_PORTS: Dict[int, int] = {}  # each server's metrics port, by its service port


class Ordinary(NamedTuple):
    answered: int  # 200s
    slowest_s: float
    statuses: Dict[str, int]


class BodiesResult(NamedTuple):
    idle_rss_mb: float
    peak_rss_mb: float
    held: int  # attack connections the server kept reading
    refused_503: int  # attack connections refused with 503 (or closed before the body was in)
    ordinary: Ordinary
    overload_metrics: str


class StalledResult(NamedTuple):
    opened: int
    ordinary: Ordinary
    all_closed_s: float  # from the first stalled connection's opening to the last closure
    still_open: int
    replies: Dict[str, int]  # how the server closed them
    log_lines: int
    peak_rss_mb: float
    overload_metrics: str


def raise_file_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (the hard limit caps it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def start(store: Path, parser: str, code: Path) -> Tuple[Service, int]:
    """Start the service in `code`; its /metrics on a free port (TTD_METRICS_PORT), or, in
    code from before the metrics port, on the service's own port."""
    port = free_port()
    METRICS_PORTS[port] = free_port()
    env = stage_env({"TTD_HTTP_PARSER": parser, "TTD_METRICS_PORT": str(METRICS_PORTS[port])})
    env["PYTHONPATH"] = str(code)
    service = start_service(
        ["-m", "pipeline.serve_model", str(store), "--port", str(port)], port, env, cwd=code
    )
    return service, port


def ordinary_request(client: httpx.Client) -> Tuple[str, float]:
    """One customer's single-order request on a new connection: its status, and its time."""
    began = time.perf_counter()
    try:
        response = client.post(API, json={"product_code": "SKU001", "orders_placed": 112},
                               headers={"Connection": "close"})
        outcome = str(response.status_code)
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return outcome, time.perf_counter() - began


def ordinary_requests(port: int, pause: float) -> Ordinary:
    statuses: Dict[str, int] = {}
    slowest = 0.0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=ORDINARY_TIMEOUT) as client:
        for _ in range(ORDINARY):
            outcome, took = ordinary_request(client)
            statuses[outcome] = statuses.get(outcome, 0) + 1
            slowest = max(slowest, took)
            time.sleep(pause)  # pacing: spread the requests over the attack
    return Ordinary(statuses.get("200", 0), slowest, statuses)


def overload_lines(port: int) -> str:
    text = ""
    for where in (METRICS_PORTS[port], port):
        try:
            response = httpx.get(f"http://127.0.0.1:{where}/metrics", timeout=5)
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            text = response.text
            break
    wanted = ("ttd_http_overload_total{", "ttd_http_request_body_bytes ")
    lines = [line for line in text.splitlines() if line.startswith(wanted)]
    return "; ".join(lines) or "(no overload metrics: an older server)"


def send_partial_body(port: int, body: bytes) -> Optional[socket.socket]:
    """Send a batch request's headers and all but its last byte; return the socket if the
    server still holds it, None if it refused or closed it."""
    head = (
        f"POST {BATCH_API} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(head + body[:-1])
    except OSError:  # refused and closed while the body was on its way
        sock.close()
        return None
    return sock


def probe_bodies(store: Path, parser: str, code: Path) -> BodiesResult:
    service, port = start(store, parser, code)
    held: List[socket.socket] = []
    try:
        idle = status_mb(service.pid, "VmRSS")
        orders = [{"product_code": "SKU001", "orders_placed": 112}] * 10
        body = json.dumps({"orders": orders}).encode()
        body = body[:-2] + b" " * (BATCH_BYTES - len(body)) + b"]}"
        results: List[Optional[socket.socket]] = []
        customers: List[Ordinary] = []
        customer = threading.Thread(
            target=lambda: customers.append(ordinary_requests(port, 0.25))
        )
        customer.start()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: send_partial_body(port, body),
                                    range(BODY_CONNECTIONS)))
        held = [sock for sock in results if sock is not None]
        customer.join(timeout=120)
        peak = status_mb(service.pid, "VmHWM")
        metrics = overload_lines(port)
        refused = len(results) - len(held)
        for sock in held:  # sent whole, but answered 503 (the refusal comes before the body)
            sock.setblocking(False)
            try:
                refused += sock.recv(12).startswith(b"HTTP/1.1 503")
            except BlockingIOError:
                pass  # no answer: the server is still waiting for the last byte
            except OSError:
                refused += 1
        return BodiesResult(idle, peak, len(results) - refused, refused, customers[0], metrics)
    finally:
        for sock in held:
            sock.close()
        stop_service(service, timeout=60)


def probe_stalled(store: Path, parser: str, code: Path) -> StalledResult:
    service, port = start(store, parser, code)
    stalled: List[socket.socket] = []
    try:
        lines_before = len(service.output().splitlines())
        half_line = f"POST {API} HT".encode()
        began = time.monotonic()
        for _ in range(STALLED_CONNECTIONS):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(half_line)
            except OSError:
                continue
            stalled.append(sock)
        ordinary = ordinary_requests(port, 0.0)
        replies: Dict[str, int] = {}
        selector = selectors.DefaultSelector()
        for sock in stalled:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, b"")
        last_closed = time.monotonic()
        deadline = began + CLOSE_WITHIN + 5
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.01, deadline - time.monotonic())):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    chunk = conn.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                    key = key._replace(data=key.data + b"<reset>")
                except BlockingIOError:
                    continue
                if chunk:
                    selector.modify(conn, selectors.EVENT_READ, key.data + chunk)
                    continue
                kind = (key.data[:12].decode("latin-1") or "closed silently").strip()
                replies[kind] = replies.get(kind, 0) + 1
                selector.unregister(conn)
                last_closed = time.monotonic()
        still_open = len(selector.get_map())
        selector.close()
        peak = status_mb(service.pid, "VmHWM")
        metrics = overload_lines(port)
        log_lines = len(service.output().splitlines()) - lines_before
        return StalledResult(len(stalled), ordinary, last_closed - began, still_open, replies,
                             log_lines, peak, metrics)
    finally:
        for sock in stalled:
            sock.close()
        stop_service(service, timeout=60)


def train(root: Path) -> Path:
    store = LocalStore(root / "store")
    generate_dataset.main(store, rows=2000, skus=20)
    train_model.main(store)
    return store.root


def report(label: str, bodies: BodiesResult, stalled: StalledResult) -> List[bool]:
    print(f"\n== {label}")
    print(f"bodies in flight ({BODY_CONNECTIONS} x {BATCH_BYTES // 2**20} MiB, all but the "
          f"last byte): peak RSS {bodies.peak_rss_mb:.0f} MB (idle {bodies.idle_rss_mb:.0f} MB,"
          f" target <= {MAX_RSS_MB}); {bodies.held} held by the server, {bodies.refused_503} "
          "refused; ordinary requests answered 200: "
          f"{bodies.ordinary.answered}/{ORDINARY} "
          f"(slowest {bodies.ordinary.slowest_s * 1000:.0f} ms, "
          f"{bodies.ordinary.statuses})")
    print(f"  /metrics: {bodies.overload_metrics}")
    print(f"stalled connections ({stalled.opened} opened, half a request line each): ordinary "
          f"requests right after answered 200: {stalled.ordinary.answered}/{ORDINARY} "
          f"(slowest {stalled.ordinary.slowest_s * 1000:.0f} ms, "
          f"{stalled.ordinary.statuses}); every "
          f"stalled connection closed after {stalled.all_closed_s:.1f} s "
          f"({stalled.still_open} still open); closed with {stalled.replies}; "
          f"{stalled.log_lines} log lines; peak RSS {stalled.peak_rss_mb:.0f} MB")
    print(f"  /metrics: {stalled.overload_metrics}")
    checks = [
        bodies.peak_rss_mb <= MAX_RSS_MB,
        bodies.ordinary.answered >= ORDINARY - 1,
        stalled.ordinary.answered == ORDINARY
        and stalled.ordinary.slowest_s <= ORDINARY_TIMEOUT,
        stalled.still_open == 0 and stalled.all_closed_s <= CLOSE_WITHIN,
        stalled.log_lines < MAX_LOG_LINES,
    ]
    names = ["RSS <= 300 MB", ">= 19/20 during bodies", "20/20 within 3 s after stalls",
             "all stalled closed within 30 s", "< 1,000 log lines"]
    print("targets: " + ", ".join(f"{n}: {'met' if ok else 'MISSED'}"
                                  for n, ok in zip(names, checks)))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parser", choices=["h11", "httptools"], default="httptools")
    parser.add_argument("--before", type=Path, help="also probe the service in this checkout")
    args = parser.parse_args()
    files = raise_file_limit(STALLED_CONNECTIONS + 1024)
    print(f"open-file limit for this benchmark and its servers: {files}; "
          f"{os.cpu_count()} cores; parser {args.parser}")
    with tempfile.TemporaryDirectory() as scratch:
        store = train(Path(scratch))
        labels = [("this checkout", REPO)]
        if args.before is not None:
            labels.insert(0, (f"before ({args.before})", args.before.resolve()))
        met = []
        for label, code in labels:
            met = report(label, probe_bodies(store, args.parser, code),
                         probe_stalled(store, args.parser, code))
    sys.exit(0 if all(met) else 1)


if __name__ == "__main__":
    main()
