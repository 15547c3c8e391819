"""Prometheus itself judges the service's metrics and the alert rules of deploy/alerts.yaml.

promtool (Debian's `prometheus` package, installed when missing) lints a live service's
/metrics and the rules, and runs the rules' unit tests (alerts_test.yaml); a real Prometheus
server on 127.0.0.1 scrapes a live service, with the rules loaded, to show that every metric
the rules use is exposed under that name.
"""
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Set

import httpx
import pytest
import yaml

from pipeline import train_model
from pipeline.service.app import API_PATH, BATCH_PATH
from pipeline.registry.store import LocalStore
from tests.apt import ensure_program
from tests.processes import REPO, Service, free_port, start_service, stop_service

ALERTS = REPO / "deploy" / "alerts.yaml"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
DEADLINE = 60.0


class Live(NamedTuple):
    port: int
    metrics_port: int


def promtool(*args: str, stdin: str = "", cwd: Path = REPO) -> "subprocess.CompletedProcess[str]":
    command = ensure_program("promtool", "prometheus", recommends=False)
    return subprocess.run(
        [command, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120
    )


def rules() -> List[Dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def metrics_the_rules_use() -> Set[str]:
    return {name for rule in rules() for name in re.findall(r"\bttd_[a-z0-9_]+", rule["expr"])}


@pytest.fixture
def live(store_with_tranche: LocalStore) -> Iterator[Live]:
    """A service that has answered an estimate, a batch and a refusal."""
    train_model.main(store_with_tranche)
    port, metrics_port = free_port(), free_port()
    service: Service = start_service(
        ["-m", "pipeline.serve_model", str(store_with_tranche.root), "--port", str(port),
         "--metrics-port", str(metrics_port)],
        port,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        order = {"product_code": "SKU001", "orders_placed": 40}
        assert httpx.post(base + API_PATH, json=order).status_code == 200
        assert httpx.post(base + BATCH_PATH, json={"orders": [order] * 3}).status_code == 200
        refused = httpx.post(base + API_PATH, json={"product_code": "SKU999", "orders_placed": 1})
        assert refused.status_code == 422
        yield Live(port, metrics_port)
    finally:
        stop_service(service)


def test_promtool_finds_nothing_to_fix_in_a_live_service_s_metrics(live: Live) -> None:
    exposition = httpx.get(f"http://127.0.0.1:{live.metrics_port}/metrics").text
    assert "ttd_estimate_seconds_bucket" in exposition
    result = promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_promtool_accepts_the_alert_rules_each_with_for_severity_and_summary() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout
    for rule in rules():
        assert rule["alert"].startswith("TimeToDispatch")
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule


def test_the_alert_rules_are_a_prometheus_rule_spec_as_they_stand() -> None:
    assert list(yaml.safe_load(ALERTS.read_text(encoding="utf-8"))) == ["groups"]


def test_promtool_unit_tests_pass_with_every_alert_seen_firing_and_silent() -> None:
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = [
        check
        for test in yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
        for check in test["alert_rule_test"]
    ]
    for rule in rules():
        mine = [check for check in checks if check["alertname"] == rule["alert"]]
        assert any(check["exp_alerts"] for check in mine), f"{rule['alert']} never fires"
        assert any(not check["exp_alerts"] for check in mine), f"{rule['alert']} never silent"


def test_the_unit_tests_fail_when_an_alert_s_threshold_is_loosened(tmp_path: Path) -> None:
    loosened = ALERTS.read_text(encoding="utf-8").replace("> 0.10", "> 0.50")
    assert loosened != ALERTS.read_text(encoding="utf-8")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "alerts.yaml").write_text(loosened, encoding="utf-8")
    (tmp_path / "tests" / "functional").mkdir(parents=True)
    shutil.copy(ALERT_TESTS, tmp_path / "tests" / "functional")
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path / "tests" / "functional")
    assert result.returncode == 1
    assert "TimeToDispatchHighRefusalRate" in result.stdout + result.stderr


def query(client: httpx.Client, path: str, **params: str) -> Any:
    response = client.get(path, params=params)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def test_a_real_prometheus_scraping_the_service_sees_every_metric_the_rules_use(
    live: Live, tmp_path: Path
) -> None:
    prometheus = ensure_program("prometheus", "prometheus", recommends=False)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{
            "job_name": "time-to-dispatch",
            "static_configs": [{"targets": [f"127.0.0.1:{live.metrics_port}"]}],
        }],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    names: Set[str] = set()
    rule_health: List[str] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    names = set(query(client, "/api/v1/label/__name__/values"))
                    groups = query(client, "/api/v1/rules")["groups"]
                    rule_health = [rule["health"] for g in groups for rule in g["rules"]]
                except httpx.TransportError:
                    pass
                except httpx.HTTPStatusError as exc:  # 503 while its storage starts
                    if exc.response.status_code != 503:
                        raise
                if metrics_the_rules_use() <= names and rule_health.count("ok") == len(rules()):
                    break
                time.sleep(0.2)  # polling interval, not a wait for an outcome
            up = query(client, "/api/v1/query", query="up")["result"]
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    output = (tmp_path / "prometheus.log").read_text()
    assert [sample["value"][1] for sample in up] == ["1"], output
    missing = metrics_the_rules_use() - names
    assert not missing, f"the rules use metrics the service does not expose: {sorted(missing)}"
    assert rule_health == ["ok"] * len(rules()), output
