"""Hold a steady load on the service over loopback and report errors, latency and memory.

Run: python benchmarks/soak.py [--seconds 60] [--connections 32] [--url URL --pid PID]
Without --url it generates a store in a temporary folder, trains, starts serve_model on a free
loopback port, soaks it, and stops it with SIGTERM. Targets: zero errors, and less than 10%
growth of the server's resident memory between the end of the warm-up and the end of the run.
"""
import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import generate_dataset, train_model  # noqa: E402
from pipeline.generate_dataset import product_codes  # noqa: E402
from pipeline.registry.store import LocalStore  # noqa: E402
from tests.processes import free_port, start_service, stop_service  # noqa: E402

API = "/api/v0.1/time_to_dispatch"
SKUS = 200


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def hammer(url: str, until: float, seed: int, latencies: List[float], errors: List[str]) -> None:
    rng = random.Random(seed)
    codes = product_codes(SKUS)
    with httpx.Client(base_url=url, timeout=10) as client:
        while time.monotonic() < until:
            body = {"product_code": rng.choice(codes), "orders_placed": rng.randint(0, 250)}
            start = time.perf_counter()
            try:
                response = client.post(API, json=body)
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            latencies.append(time.perf_counter() - start)


def load(url: str, seconds: float, connections: int) -> Tuple[List[float], List[str]]:
    latencies: List[float] = []
    errors: List[str] = []
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=hammer, args=(url, until, i, latencies, errors))
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def soak(url: str, pid: int, seconds: float, connections: int, warmup: float) -> bool:
    idle = rss_mib(pid)
    load(url, warmup, connections)
    warm = rss_mib(pid)
    started = time.monotonic()
    latencies, errors = load(url, seconds, connections)
    elapsed = time.monotonic() - started
    end = rss_mib(pid)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    growth = (end - warm) / warm
    print(f"duration          {elapsed:.1f} s at {connections} connections")
    print(f"requests          {len(latencies)} ({len(latencies) / elapsed:.0f}/s)")
    print(f"errors            {len(errors)} {sorted(set(errors))[:5]}")
    print(f"latency p50, p99  {statistics.median(latencies) * 1e3:.1f} ms, {p99 * 1e3:.1f} ms")
    print(f"server RSS        idle {idle:.1f} MiB, after {warmup:.0f} s warm-up {warm:.1f} MiB, "
          f"end {end:.1f} MiB")
    print(f"memory growth     {growth:+.1%} over the run (target < 10%)")
    ok = not errors and growth < 0.10
    print("result            " + ("PASS" if ok else "FAIL"))
    return ok


def main(seconds: float, connections: int, warmup: float, url: Optional[str],
         pid: Optional[int]) -> bool:
    if url and pid:
        return soak(url, pid, seconds, connections, warmup)
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(Path(root) / "store")
        generate_dataset.main(store, rows=20_000, skus=SKUS)
        train_model.main(store)
        port = free_port()
        service = start_service(
            ["-m", "pipeline.serve_model", str(store.root), "--port", str(port)], port
        )
        try:
            return soak(f"http://127.0.0.1:{port}", service.pid, seconds, connections, warmup)
        finally:
            stop_service(service)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--url", help="soak a running service instead of starting one")
    parser.add_argument("--pid", type=int, help="the running service's process id (for RSS)")
    args = parser.parse_args()
    sys.exit(0 if main(args.seconds, args.connections, args.warmup, args.url, args.pid) else 1)
