"""The observability profile of the compose stack: `docker-compose --profile
observability config` validates, Prometheus scrapes the port the API and
worker containers serve metrics on, Grafana's provisioning and dashboard are
mounted, and every metric the dashboard queries is one Chorus or the Temporal
SDK exports (a renamed metric breaks this test, not a panel in production)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

# Imported for their metrics, which join the default registry.
import activities.gateway.metrics
import activities.metrics  # noqa: F401
import api.metrics
from tests.test_compose import DEPLOY, REQUIRED_VARS, run_compose
from workflows import metrics as workflow_metrics

PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "chorus.json"
WORKFLOW_METRICS = {
    # Counted by workflow code through the SDK's meter, served by its exporter
    # (tests/workflows/test_workflow_metrics.py scrapes these names).
    workflow_metrics.FALLBACKS,
    workflow_metrics.BUDGET_REFUSALS,
    workflow_metrics.GUARD_VERDICTS,
    f"{workflow_metrics.DECISION_SECONDS}_bucket",
}
SDK_METRICS = {
    # Names the Temporal SDK's exporter served in tests/integration/test_metrics.py.
    "temporal_workflow_task_schedule_to_start_latency_bucket",
    "temporal_activity_schedule_to_start_latency_bucket",
    "temporal_workflow_task_execution_latency_bucket",
    "temporal_worker_task_slots_available",
    "temporal_request_failure_total",
    "temporal_long_request_failure_total",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("compose-observability")
    result = run_compose(
        "--profile", "observability", "config", env=REQUIRED_VARS, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            out[target] = source
    return out


def test_prometheus_scrapes_the_api_and_every_worker(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert services["prometheus"].get("profiles") == ["observability"]
    assert services["grafana"].get("profiles") == ["observability"]
    assert (
        Path(mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"]) == PROMETHEUS_CONFIG
    )
    ports = {services[n]["environment"]["CHORUS_METRICS_PORT"] for n in ("api", "worker")}
    assert ports == {"9464"}
    assert {services[n]["environment"]["CHORUS_METRICS_HOST"] for n in ("api", "worker")} == {
        "0.0.0.0"
    }
    jobs = {
        job["job_name"]: job
        for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    }
    assert jobs["chorus-api"]["static_configs"][0]["targets"] == ["api:9464"]
    [workers] = jobs["chorus-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"] and workers["port"] == 9464


def test_grafana_is_provisioned_with_the_dashboard(stack: dict[str, Any]) -> None:
    grafana = mounts(stack["services"]["grafana"])
    provisioning = Path(grafana["/etc/grafana/provisioning"])
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "chorus.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert Path(grafana[path]) == DASHBOARD.parent
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {source["uid"]}


def test_every_panel_has_a_whole_grid_position_and_a_unique_id() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    assert len({p["id"] for p in panels}) == len(panels)


def test_every_metric_the_dashboard_queries_exists() -> None:
    exported = (
        {
            sample_name
            for metric in REGISTRY.collect()
            for sample_name in (
                metric.name,
                f"{metric.name}_total",
                f"{metric.name}_bucket",
                f"{metric.name}_count",
            )
        }
        | SDK_METRICS
        | WORKFLOW_METRICS
        | {api.metrics.AWAITING_APPROVAL}
    )  # collected at scrape time
    exprs = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    queried = {name for expr in exprs for name in re.findall(r"\b((?:chorus|temporal)_\w+)", expr)}
    assert queried and queried <= exported, queried - exported
