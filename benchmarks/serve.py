"""How fast is the service, beside a FastAPI app that does nothing with the same contract?

Run: python benchmarks/serve.py [--seconds 10] [--rounds 3] [--connections 32] [--threads 2]
Generates a real-shaped tranche (Zipf(1.1), 2,000 products) into a scratch store and trains on
it (the stages as processes), then starts our service (`python -m pipeline.serve_model`, one
worker, its defaults, /metrics scraped every second) and the floor (benchmarks/floor_app.py:
the same request and response models, a constant from an `async def`, plain `uvicorn` with its
defaults, one worker). It loads each with wrk (POSTs rotating over 500 product codes),
alternating A B A B for the same time each, and prints requests/s, p50 and p99 of every run,
the medians, and the ratio. Then it loads the batch endpoint with 10,000-order bodies and
prints the estimates served per second. Each round also loads ours with the same single
bodies asking for a promise (promise_probability 0.9), and prints its ratio to ours without.
Targets (README, "Performance"): ours/floor >= 1.2
with our p99 <= the floor's in the same run, and >= 500,000 estimates/s in batches.

wrk is the Debian package: found on PATH, or installed with apt-get when running as root.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.registry.published import load_newest_model  # noqa: E402
from pipeline.registry.store import LocalStore  # noqa: E402
from tests.processes import Service, free_port, stage_env, start_service, stop_service  # noqa: E402

API = "/api/v0.1/time_to_dispatch"
BATCH_API = "/api/v0.1/time_to_dispatch/batch"
ROWS, SKUS = 100_000, 2_000
CODES_USED = 500
BATCH_ORDERS = 10_000
TARGET_RATIO = 1.2
TARGET_ESTIMATES = 500_000
# Each wrk thread reads the bodies once, then sends them in turn.
LUA = """
local bodies = {}
for line in io.lines(%s) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


class Run(NamedTuple):
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors


def find_wrk() -> str:
    """Return wrk's path, installing Debian's package first if it is missing (as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: apt-get install wrk (as root), then run this again")
    print("installing wrk with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get installed wrk, but it is not on PATH")
    return found


def parse_wrk(output: str) -> Run:
    """Read requests/s, p50, p99 and errors from `wrk --latency` output."""
    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            raise RuntimeError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(match.group(1)) * UNITS[match.group(2)]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rate:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{output}")
    errors = sum(
        int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output)
    ) + sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return Run(float(rate.group(1)), latency("50"), latency("99"), errors)


def load(wrk: str, url: str, script: Path, seconds: float, connections: int,
         threads: int) -> Run:
    output = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    return parse_wrk(output)


def scrape_metrics(base: str, stop: threading.Event, scrapes: List[int]) -> None:
    """GET /metrics (on the metrics port) every second, as Prometheus would, during the load."""
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.wait(1.0):
            if client.get("/metrics").status_code == 200:
                scrapes[0] += 1


def train(root: Path) -> LocalStore:
    store = LocalStore(root / "store")
    env = stage_env()
    for stage in (
        ["pipeline.generate_dataset", "--rows", str(ROWS), "--skus", str(SKUS), "--zipf", "1.1"],
        ["pipeline.train_model"],
    ):
        subprocess.run(
            [sys.executable, "-m", stage[0], str(store.root), *stage[1:]],
            cwd=REPO, env=env, check=True, capture_output=True,
        )
    return store


def start_floor() -> "tuple[Service, int]":
    port = free_port()
    command = ["-m", "uvicorn", "benchmarks.floor_app:app", "--port", str(port)]
    service = Service(command, stage_env(), REPO)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if service.poll() is not None:
            raise RuntimeError(f"the floor exited:\n{service.output()}")
        try:
            httpx.post(base + API, json={}, timeout=1)
            return service, port
        except httpx.TransportError:
            threading.Event().wait(0.1)  # polling interval while it starts
    stop_service(service)
    raise RuntimeError("the floor did not start")


def write_bodies(root: Path, codes: List[str]) -> "tuple[Path, Path, Path]":
    """Write the single-order bodies (without and with a promise) and one 10,000-order body,
    and a wrk script for each."""
    rng = random.Random(1)
    singles = root / "singles.jsonl"
    single_bodies = [{"product_code": code, "orders_placed": rng.randint(0, 320)}
                     for code in codes]
    singles.write_text("".join(json.dumps(body) + "\n" for body in single_bodies))
    promises = root / "promises.jsonl"
    promises.write_text("".join(
        json.dumps({**body, "promise_probability": 0.9}) + "\n" for body in single_bodies
    ))
    batch = root / "batch.jsonl"
    orders = [
        {"product_code": rng.choice(codes), "orders_placed": rng.randint(0, 320)}
        for _ in range(BATCH_ORDERS)
    ]
    batch.write_text(json.dumps({"orders": orders}) + "\n")
    scripts = []
    for bodies in (singles, batch, promises):
        script = bodies.with_suffix(".lua")
        script.write_text(LUA % json.dumps(str(bodies)))
        scripts.append(script)
    return scripts[0], scripts[1], scripts[2]


def row(name: str, run: Run) -> str:
    return (f"{name:<14} {run.requests_per_s:>10,.0f} {run.p50_ms:>8.2f} {run.p99_ms:>8.2f} "
            f"{run.errors:>7}")


def median_run(runs: List[Run]) -> Run:
    return Run(
        statistics.median(r.requests_per_s for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
    )


def main(seconds: float, rounds: int, connections: int, threads: int,
         batch_connections: int) -> None:
    wrk = find_wrk()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        print(f"training on {ROWS:,} rows over {SKUS:,} products (Zipf 1.1) ...", flush=True)
        store = train(root)
        codes = list(load_newest_model(store).model.product_codes)
        single_lua, batch_lua, promise_lua = write_bodies(
            root, random.Random(2).sample(codes, CODES_USED)
        )
        port, metrics_port = free_port(), free_port()
        ours = start_service(
            ["-m", "pipeline.serve_model", str(store.root), "--port", str(port),
             "--metrics-port", str(metrics_port)],
            port,
        )
        floor, floor_port = start_floor()
        urls = {"ours": f"http://127.0.0.1:{port}", "floor": f"http://127.0.0.1:{floor_port}"}
        stop = threading.Event()
        scrapes = [0]
        scraper = threading.Thread(
            target=scrape_metrics, args=(f"http://127.0.0.1:{metrics_port}", stop, scrapes)
        )
        scraper.start()
        results: Dict[str, List[Run]] = {"ours": [], "floor": [], "promise": []}
        batch: Optional[Run] = None
        try:
            for name, url in urls.items():  # a warm-up of each, not counted
                load(wrk, url + API, single_lua, 2, connections, threads)
            print(f"\n{rounds} rounds, alternating, {seconds:g} s each, wrk -t{threads} "
                  f"-c{connections}, {CODES_USED} product codes, {date.today()}\n")
            print(f"{'run':<14} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
            for i in range(rounds):
                for name, url in urls.items():
                    run = load(wrk, url + API, single_lua, seconds, connections, threads)
                    results[name].append(run)
                    print(row(f"{name} {i + 1}", run), flush=True)
                run = load(wrk, urls["ours"] + API, promise_lua, seconds, connections, threads)
                results["promise"].append(run)
                print(row(f"promise {i + 1}", run), flush=True)
            batch_check = httpx.post(urls["ours"] + BATCH_API, json={"orders": []}, timeout=10)
            if batch_check.status_code != 404:
                batch = load(wrk, urls["ours"] + BATCH_API, batch_lua, seconds,
                             batch_connections, 1)
        finally:
            stop.set()
            scraper.join()
            stop_service(floor)
            stop_service(ours)
        medians = {name: median_run(runs) for name, runs in results.items()}
        ratio = medians["ours"].requests_per_s / medians["floor"].requests_per_s
        print()
        print(row("ours median", medians["ours"]))
        print(row("floor median", medians["floor"]))
        print(f"\nratio ours/floor  {ratio:.2f} (target >= {TARGET_RATIO}): "
              f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}")
        p99_met = medians["ours"].p99_ms <= medians["floor"].p99_ms
        print(f"p99 ours/floor    {medians['ours'].p99_ms:.2f} ms / "
              f"{medians['floor'].p99_ms:.2f} ms (target: ours <= floor): "
              f"{'met' if p99_met else 'NOT met'}")
        print(row("promise median", medians["promise"]))
        promised = medians["promise"].requests_per_s / medians["ours"].requests_per_s
        print(f"promise/ours      {promised:.2f} (single requests with promise_probability 0.9 "
              "over without, same run)")
        print(f"/metrics scraped  {scrapes[0]} times during the runs")
        if batch is None:
            print("batch             no batch endpoint (404)")
            return
        estimates = batch.requests_per_s * BATCH_ORDERS
        print(f"batch             {BATCH_ORDERS:,} orders a request, wrk -t1 "
              f"-c{batch_connections}: {batch.requests_per_s:,.1f} req/s, p50 "
              f"{batch.p50_ms:.1f} ms, p99 {batch.p99_ms:.1f} ms, {batch.errors} errors")
        print(f"estimates/s       {estimates:,.0f} (target >= {TARGET_ESTIMATES:,}): "
              f"{'met' if estimates >= TARGET_ESTIMATES else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="each run's length")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (2 cores: keep it low)")
    parser.add_argument("--batch-connections", type=int, default=4,
                        help="wrk -c for the 10,000-order batches")
    args = parser.parse_args()
    main(args.seconds, args.rounds, args.connections, args.threads, args.batch_connections)
