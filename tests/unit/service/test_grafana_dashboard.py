"""deploy/grafana-dashboard.json is a Grafana dashboard model that imports as is: its panels
query the templated Prometheus data source, tile the grid, and use only the metrics and labels
the service exports (tests/functional/test_grafana_dashboard.py runs each query against a
real Prometheus). Here, beside the metrics, because it reads their registry."""
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import numpy as np
import pytest

from pipeline.registry.published import LoadedModel
from pipeline.service.metrics import ServiceMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Labels Prometheus adds to every series it scrapes (deploy/podmonitor.yaml adds `pod`).
TARGET_LABELS = {"instance", "job", "pod"}


def load() -> Dict[str, Any]:
    dashboard: Dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def panels() -> List[Dict[str, Any]]:
    """The panels that show data (rows only group them)."""
    return [panel for panel in load()["panels"] if panel["type"] != "row"]


def targets() -> Iterator[Tuple[str, Dict[str, Any]]]:
    for panel in panels():
        for target in panel["targets"]:
            yield panel["title"], target


def exported(model: LoadedModel) -> Dict[str, Set[str]]:
    """Every sample name the service exposes once it has answered, with its labels."""
    metrics = ServiceMetrics()
    metrics.set_model(model.metadata, True)
    metrics.request("/api/v0.1/time_to_dispatch", "POST", 200, 0.001)
    metrics.estimate(10.0, 40.0)
    metrics.estimate_many(np.array([10.0]), np.array([40.0]))
    metrics.watch_body_bytes(lambda: 0.0)
    names: Dict[str, Set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_the_dashboard_is_a_dashboard_model_grafana_imports_as_a_new_dashboard() -> None:
    dashboard = load()
    assert dashboard["id"] is None  # Grafana gives it one on import
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and dashboard["tags"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["time"] == {"from": "now-6h", "to": "now"}
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource", "datasource", "prometheus")


def test_every_panel_queries_the_templated_prometheus_and_no_instance_of_it() -> None:
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert not re.search(r"\b(instance|job|pod|namespace)\s*=", target["expr"])
    uids = re.findall(r'"uid": "([^"]*)"', DASHBOARD.read_text(encoding="utf-8"))
    assert set(uids) == {load()["uid"], "${datasource}"}  # no data source hard-coded


def test_the_panels_tile_the_grid_without_overlapping() -> None:
    every = load()["panels"]
    assert len({panel["id"] for panel in every}) == len(every)
    cells: Set[Tuple[int, int]] = set()
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(grid["x"] + dx, grid["y"] + dy)
                for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("title, target", list(targets()),
                         ids=[f"{title}-{target['refId']}" for title, target in targets()])
def test_each_query_uses_only_metrics_and_labels_the_service_exports(
    trained_model: LoadedModel, title: str, target: Dict[str, Any]
) -> None:
    names = exported(trained_model)
    expr = target["expr"]
    used = set(re.findall(r"\bttd_[a-z0-9_]+", expr))
    assert used and used <= set(names), f"{title}: not exported: {sorted(used - set(names))}"
    labels = set().union(*(names[name] for name in used)) | TARGET_LABELS
    grouped = {label.strip() for clause in re.findall(r"\b(?:by|ignoring)\s*\(([^)]*)\)", expr)
               for label in clause.split(",")}
    matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*[=!~]", expr))
    assert grouped | matched <= labels | {"le"}, f"{title}: {sorted(grouped | matched - labels)}"
    shown = set(re.findall(r"{{\s*([a-z_]+)\s*}}", target["legendFormat"]))
    aggregated = re.search(r"\b(sum|count|max|min|avg)\b", expr)
    assert shown <= (grouped if aggregated else labels), f"{title}: legend {sorted(shown)}"


def test_every_metric_the_service_exports_has_a_panel(trained_model: LoadedModel) -> None:
    families = {re.sub(r"_(total|created|bucket|count|sum)$", "", name)
                for name in exported(trained_model)}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for _, target in targets()
             for name in re.findall(r"\bttd_[a-z0-9_]+", target["expr"])}
    assert families == shown
