"""docker/observability: the scrape config, alert rules, their unit tests, and the dashboard.

promtool itself runs in scripts/check-observability.sh; these checks need no Prometheus.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from tests.observability.support import (
    OBSERVABILITY,
    PROMETHEUS_SERIES,
    alert_queries,
    alert_rules,
    dashboard,
    dashboard_queries,
    metric_names,
    sample_names,
)

ALERTS = {"ItemsApiDown", "ItemsApiDatabaseNotReady", "ItemsApiHigh5xxRatio", "ItemsApiHighLatencyP99"}


def _yaml(*parts: str) -> Any:
    return yaml.safe_load(OBSERVABILITY.joinpath(*parts).read_text())


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="items-api"} == 0', {"up"}),
        (
            'histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket{route!="/x"}[5m])))',
            {"http_request_duration_seconds_bucket"},
        ),
        (
            'sum(rate(a_total{status=~"5.."}[$__rate_interval])) / sum without (pod) (rate(b_total[1m] offset 5m))',
            {"a_total", "b_total"},
        ),
        ("max by (version, git_sha) (items_api_build_info) > bool 0.5", {"items_api_build_info"}),
    ],
)
def test_metric_names_finds_the_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_required_alert_exists_with_a_severity_and_an_explanation() -> None:
    rules = alert_rules()

    assert {rule["alert"] for rule in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        assert rule["for"], "alerts wait before firing, so one bad scrape does not page"


def test_every_alert_has_unit_tests_that_fire_it_and_that_keep_it_quiet() -> None:
    tests = _yaml("tests", "items-api.test.yml")["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]

    fired = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    assert fired == quiet == ALERTS


def test_prometheus_scrapes_the_api_and_loads_the_rules() -> None:
    config = _yaml("prometheus.yml")

    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "items-api"]
    assert job["metrics_path"] == "/metrics"
    [pattern] = config["rule_files"]
    assert [path.name for path in OBSERVABILITY.glob(pattern)] == ["items-api.yml"]


def test_grafana_provisions_the_datasource_the_dashboard_uses() -> None:
    [datasource] = _yaml("grafana", "provisioning", "datasources", "prometheus.yml")["datasources"]
    [provider] = _yaml("grafana", "provisioning", "dashboards", "items-api.yml")["providers"]
    panels = dashboard()["panels"]

    assert datasource["url"] == "http://prometheus:9090"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}


def test_the_dashboard_shows_rate_errors_latency_percentiles_and_pool_use() -> None:
    queries = dashboard_queries()

    assert any("rate(http_requests_total" in query for query in queries)
    assert any('status=~"5.."' in query for query in queries)
    assert {"0.5", "0.95", "0.99"} <= {
        q for query in queries for q in re.findall(r"histogram_quantile\((0\.\d+),", query)
    }
    assert {"db_pool_connections_in_use", "db_pool_size"} <= set().union(*map(metric_names, queries))


def test_dashboard_and_alerts_query_only_metrics_this_process_exports(client: FlaskClient) -> None:
    client.get("/items")
    exported = sample_names(client.get("/metrics").get_data(as_text=True)) | PROMETHEUS_SERIES

    used = set().union(*(metric_names(query) for query in dashboard_queries() + alert_queries()))

    assert used - exported == set()
