"""Every panel of deploy/grafana-dashboard.json shows data: a real Prometheus scrapes a live
service that answers estimates, a promise, a batch and refusals (and turns nothing away), and
each panel's query, with Grafana's interval variables set as Grafana would, returns series."""
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import httpx

from pipeline.service.app import API_PATH, BATCH_PATH, MODEL_PATH
from tests.processes import REPO
from tests.prometheus import Live, running_prometheus
from tests.scrape import parse_metrics, total

DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
# What Grafana puts for its interval variables; a minute holds the samples before and after
# the traffic at Prometheus' 1 s scrape interval.
GRAFANA_VARIABLES = {
    "${__rate_interval}": "1m", "$__rate_interval": "1m",
    "${__interval}": "15s", "$__interval": "15s", "${__range}": "5m", "$__range": "5m",
}
ORDER = {"product_code": "SKU001", "orders_placed": 40}


def panel_queries() -> List[Tuple[str, str]]:
    """Each panel's queries, as (panel title and refId, the query Prometheus is sent)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"a Grafana variable this test does not set: {expr}"
            queries.append((f"{panel['title']} ({target['refId']})", expr))
    return queries


def send_traffic(base: str) -> None:
    """Estimates, a promise, a batch, the model's description, and refusals of four kinds."""
    with httpx.Client(base_url=base) as client:
        for orders_placed in (5, 40, 400):
            answer = client.post(API_PATH, json={**ORDER, "orders_placed": orders_placed})
            assert answer.status_code == 200
        promised = client.post(API_PATH, json={**ORDER, "promise_probability": 0.9})
        assert promised.json()["promise_probability"] == 0.9
        assert client.post(BATCH_PATH, json={"orders": [ORDER] * 5}).status_code == 200
        assert client.get(MODEL_PATH).status_code == 200
        refusals = [
            client.post(API_PATH, json={"product_code": "SKU999", "orders_placed": 1}),
            client.post(API_PATH, json={**ORDER, "orders_placed": -1}),
            client.post(API_PATH, json={"product_code": "SKU001"}),
            client.post(API_PATH, content=json.dumps(ORDER),
                        headers={"content-type": "text/plain"}),
        ]
        assert [refusal.status_code for refusal in refusals] == [422, 422, 422, 415]


def answered(live: Live) -> float:
    """Requests the service has answered so far, by its own count."""
    exposition = httpx.get(f"http://{live.target}/metrics").text
    return total(parse_metrics(exposition), "ttd_http_requests_total")


def test_every_panel_s_query_returns_series_from_a_real_prometheus_scraping_the_service(
    live: Live, tmp_path: Path
) -> None:
    results: Dict[str, List[Dict[str, Any]]] = {}
    with running_prometheus(tmp_path, live.target) as prometheus:
        first_scrape = prometheus.wait_for(lambda: bool(prometheus.instant("ttd_model_info")))
        assert first_scrape, prometheus.output()
        send_traffic(f"http://127.0.0.1:{live.port}")
        count = answered(live)

        def scraped_since() -> bool:
            series = prometheus.instant("sum(ttd_http_requests_total)")
            return bool(series) and float(series[0]["value"][1]) >= count

        assert prometheus.wait_for(scraped_since), prometheus.output()
        for name, expr in panel_queries():
            results[name] = prometheus.instant(expr)
    assert len(results) >= 14
    assert [name for name, series in results.items() if not series] == []
    # A number, not only NaN (a quantile of nothing): the panel draws something.
    drawn = {name: [float(s["value"][1]) for s in series]
             for name, series in results.items()}
    assert [name for name, values in drawn.items()
            if not any(math.isfinite(value) for value in values)] == []
