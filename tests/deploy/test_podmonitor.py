"""deploy/podmonitor.yaml scrapes the pods Bodywork makes for serve_model, on the metrics port."""
from typing import Any, Dict

import yaml

from tests.deploy.stage_requirements import REPO, load_bodywork_config

PODMONITOR = REPO / "deploy" / "podmonitor.yaml"
# The labels Bodywork 3.0.12 gives a service stage's pods (bodywork/k8s/deployments.py).
BODYWORK_POD_LABELS = {
    "app": "bodywork", "stage": "serve-model", "deployment-name": "time-to-dispatch"
}


def load() -> Dict[str, Any]:
    document: Dict[str, Any] = yaml.safe_load(PODMONITOR.read_text(encoding="utf-8"))
    return document


def test_the_podmonitor_selects_the_serve_stage_s_pods_in_the_pipeline_s_namespace() -> None:
    config = load_bodywork_config()
    monitor = load()
    assert monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["namespace"] == config["pipeline"]["name"]
    assert BODYWORK_POD_LABELS["deployment-name"] == config["pipeline"]["name"]
    assert BODYWORK_POD_LABELS["stage"] == "serve_model".replace("_", "-")
    assert monitor["spec"]["selector"]["matchLabels"] == BODYWORK_POD_LABELS


def test_the_podmonitor_scrapes_the_metrics_port_of_bodywork_yaml_not_the_service_s() -> None:
    serve = load_bodywork_config()["stages"]["serve_model"]
    metrics_port = serve["args"][serve["args"].index("--metrics-port") + 1]
    assert metrics_port != str(serve["service"]["port"])
    [endpoint] = load()["spec"]["podMetricsEndpoints"]
    assert "port" not in endpoint and "targetPort" not in endpoint  # Bodywork declares none
    assert endpoint["path"] == "/metrics"
    [address] = [r for r in endpoint["relabelings"] if r["targetLabel"] == "__address__"]
    assert address["sourceLabels"] == ["__meta_kubernetes_pod_ip"]
    assert address["replacement"] == f"$1:{metrics_port}"
