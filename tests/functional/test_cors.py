"""A page of the platform UI calls the live service from its own origin, in headless Chromium.

The service runs as a process with TTD_CORS_ORIGINS naming one page server on 127.0.0.1; the
same page, served from another port (another origin), is the page of any other site. The page
POSTs JSON with `fetch`, which a browser sends only after a preflight (OPTIONS) the service
answers. The allowed page reads the fast path's answers and a refusal; the other page's calls
are refused at the preflight, and never reach the service's routes (its metrics say so).
"""
import html
import http.server
import json
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, NamedTuple

import httpx
import pytest

from pipeline import train_model
from pipeline.registry.store import LocalStore
from pipeline.service.app import API_PATH, BATCH_PATH
from tests.chromium import run_chromium
from tests.processes import free_port, stage_env, start_service, stop_service
from tests.scrape import parse_metrics, total

ORDER = {"product_code": "SKU001", "orders_placed": 40}
# Each call's status and body, or how the browser refused it, one line each, in the page.
PAGE = """<!doctype html>
<title>platform UI</title>
<pre id="calls">pending</pre>
<script>
async function call(path, body) {
  try {
    const response = await fetch(API + path, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)
    });
    return response.status + " " + JSON.stringify(await response.json());
  } catch (error) {
    return "blocked " + error.name;
  }
}
(async () => {
  const lines = [
    await call(SINGLE, Object.assign({promise_probability: 0.9}, ORDER)),
    await call(BATCH, {orders: [ORDER, ORDER]}),
    await call(SINGLE, {product_code: "SKU999", orders_placed: 1}),
  ];
  document.getElementById("calls").textContent = lines.join("\\n");
})();
</script>
"""


class Live(NamedTuple):
    api: str
    metrics: str
    allowed: str  # the origin of the page server TTD_CORS_ORIGINS names
    other: str  # the same page from another port


@contextmanager
def page_server(page: bytes) -> Iterator[str]:
    """Serve `page` at / on 127.0.0.1 from a thread; yield its origin."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def live(store_with_tranche: LocalStore) -> Iterator[Live]:
    train_model.main(store_with_tranche)
    port, metrics_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    script = (f"const API = {json.dumps(api)}, SINGLE = {json.dumps(API_PATH)}, "
              f"BATCH = {json.dumps(BATCH_PATH)}, ORDER = {json.dumps(ORDER)};\n")
    page = PAGE.replace("<script>\n", "<script>\n" + script).encode()
    with page_server(page) as allowed, page_server(page) as other:
        service = start_service(
            ["-m", "pipeline.serve_model", str(store_with_tranche.root), "--port", str(port),
             "--metrics-port", str(metrics_port)],
            port, env=stage_env({"TTD_CORS_ORIGINS": f"https://ui.example.com,{allowed}"}),
        )
        try:
            yield Live(api, f"http://127.0.0.1:{metrics_port}/metrics", allowed, other)
        finally:
            log = stop_service(service)
        assert f"CORS: the origins whose pages may call the API from a browser: " \
               f"https://ui.example.com, {allowed}" in log


def calls_made_by_the_page(origin: str, profile: Path) -> List[str]:
    """Open the page in Chromium; return what each call gave it, once all have ended.

    Virtual time does not advance while the page's fetches are in flight, so the DOM is
    dumped after the last has ended, however long the service takes.
    """
    dom = run_chromium(["--virtual-time-budget=30000", "--dump-dom", origin + "/"], profile)
    found = re.search(r'<pre id="calls">(.*?)</pre>', dom, re.S)
    assert found, dom
    return html.unescape(found.group(1)).splitlines()


def estimate_requests(live: Live) -> float:
    """The POSTs the estimate routes have answered (a preflight never reaches them)."""
    samples = parse_metrics(httpx.get(live.metrics).text)
    return sum(total(samples, "ttd_http_requests_total", route=route, method="POST")
               for route in (API_PATH, BATCH_PATH))


def test_a_page_of_the_allowed_origin_reads_estimates_and_refusals_in_chromium(
    live: Live, tmp_path: Path
) -> None:
    version = httpx.get(live.api + "/ready").json()["model_version"]
    before = estimate_requests(live)
    promise, batch, refusal = calls_made_by_the_page(live.allowed, tmp_path / "profile")
    status, body = promise.split(" ", 1)
    assert status == "200" and json.loads(body)["model_version"] == version
    assert json.loads(body)["promise_probability"] == 0.9
    status, body = batch.split(" ", 1)
    assert status == "200" and len(json.loads(body)["estimates"]) == 2
    status, body = refusal.split(" ", 1)
    assert status == "422"
    assert json.loads(body)["detail"][0]["type"] == "unknown_product_code"
    assert estimate_requests(live) == before + 3


def test_a_page_of_another_origin_is_refused_at_the_preflight_in_chromium(
    live: Live, tmp_path: Path
) -> None:
    before = estimate_requests(live)
    calls = calls_made_by_the_page(live.other, tmp_path / "profile")
    assert calls == ["blocked TypeError"] * 3
    assert estimate_requests(live) == before  # no POST was ever sent


def test_a_real_preflight_is_answered_for_the_allowed_origin_and_refused_for_another(
    live: Live
) -> None:
    asked = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type"}
    allowed = httpx.options(live.api + API_PATH, headers={"Origin": live.allowed, **asked})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == live.allowed
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
    assert allowed.headers["access-control-max-age"] == "7200"
    other = httpx.options(live.api + API_PATH, headers={"Origin": live.other, **asked})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    answered = httpx.post(live.api + API_PATH, json=ORDER, headers={"Origin": live.allowed})
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == live.allowed
