"""Prometheus itself judges the service's metrics and the alert rules of deploy/alerts.yaml.

promtool (Debian's `prometheus` package, installed when missing) lints a live service's
/metrics and the rules, and runs the rules' unit tests (alerts_test.yaml); a real Prometheus
server on 127.0.0.1 scrapes a live service, with the rules loaded, to show that every metric
the rules use is exposed under that name.
"""
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Set

import httpx
import yaml

from tests.apt import ensure_program
from tests.processes import REPO
from tests.prometheus import Live, running_prometheus

ALERTS = REPO / "deploy" / "alerts.yaml"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")


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


def test_a_real_prometheus_scraping_the_service_sees_every_metric_the_rules_use(
    live: Live, tmp_path: Path
) -> None:
    names: Set[str] = set()
    rule_health: List[str] = []
    with running_prometheus(tmp_path, live.target, [ALERTS]) as prometheus:

        def scraped_with_rules_loaded() -> bool:
            nonlocal names, rule_health
            names = set(prometheus.query("/api/v1/label/__name__/values"))
            groups = prometheus.query("/api/v1/rules")["groups"]
            rule_health = [rule["health"] for g in groups for rule in g["rules"]]
            return metrics_the_rules_use() <= names and rule_health.count("ok") == len(rules())

        prometheus.wait_for(scraped_with_rules_loaded)
        up = prometheus.instant("up")
    output = prometheus.output()
    assert [sample["value"][1] for sample in up] == ["1"], output
    missing = metrics_the_rules_use() - names
    assert not missing, f"the rules use metrics the service does not expose: {sorted(missing)}"
    assert rule_health == ["ok"] * len(rules()), output
