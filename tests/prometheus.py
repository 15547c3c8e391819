"""A real Prometheus server on 127.0.0.1 scraping a live service every second, and its HTTP API,
for the tests that ask it what the service's metrics say (Debian's `prometheus` package,
installed when missing)."""
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Sequence

import httpx
import yaml

from tests.apt import ensure_program
from tests.processes import free_port

DEADLINE = 60.0


class Live(NamedTuple):
    """A live service's ports: the API's, and the metrics' that Prometheus scrapes."""

    port: int
    metrics_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"


class Prometheus:
    """A running server's API, and its log."""

    def __init__(self, client: httpx.Client, process: "subprocess.Popen[bytes]", log: Path
                 ) -> None:
        self.client = client
        self.process = process
        self.log = log

    def query(self, path: str, **params: str) -> Any:
        """Return the `data` of an API answer (raises on an error, a bad query among them)."""
        response = self.client.get(path, params=params)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, expr: str) -> List[Dict[str, Any]]:
        """Evaluate `expr` now; return its series."""
        result: List[Dict[str, Any]] = self.query("/api/v1/query", query=expr)["result"]
        return result

    def wait_for(self, ready: Callable[[], bool]) -> bool:
        """Ask `ready` until it says True (True), or the server ends or DEADLINE passes."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if ready():
                    return True
            except httpx.TransportError:
                pass
            except httpx.HTTPStatusError as exc:  # 503 while its storage starts
                if exc.response.status_code != 503:
                    raise
            time.sleep(0.2)  # polling interval, not a wait for an outcome
        return False

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def running_prometheus(
    workdir: Path, target: str, rule_files: Sequence[Path] = ()
) -> Iterator[Prometheus]:
    """Run Prometheus, its data in `workdir`, scraping `target` (host:port) every second."""
    prometheus = ensure_program("prometheus", "prometheus", recommends=False)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{
            "job_name": "time-to-dispatch", "static_configs": [{"targets": [target]}],
        }],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    log = workdir / "prometheus.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [prometheus, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=output, stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                yield Prometheus(client, server, log)
        finally:
            server.terminate()
            server.wait(timeout=30)
