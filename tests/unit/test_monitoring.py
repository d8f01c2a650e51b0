"""The monitoring of the compose stack: Prometheus scrapes every Catalens service where it
serves /metrics, the alert rules and the dashboard are well formed, and they read only
the metrics the services agreed to export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import (
    AGREED,
    ALERTS,
    DASHBOARD,
    PROMETHEUS,
    ROOT,
    dashboard,
    dashboard_expressions,
    metric_name,
    promql_metrics,
    referenced_metrics,
    rules,
)
from tests.unit.test_compose import compose

CATALENS = ("api", "embedder", "sink")


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path → host path of a service's bind mounts (``./x:/y[:ro]``)."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("."):
            out[container] = ROOT / host
    return out


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    for container, host in _mounts(service).items():
        if container_path.startswith(container + "/"):
            return host / container_path[len(container) + 1 :]
    raise AssertionError(f"{container_path} is not mounted from the repository")


def test_prometheus_and_grafana_run_beside_the_services_with_their_files_mounted() -> None:
    data = compose()
    services = data["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    # Monitoring waits for no Catalens service: a dead one must show as down.
    assert "depends_on" not in services["prometheus"]
    for name in ("prometheus", "grafana"):
        for host in _mounts(services[name]).values():
            assert host.is_dir(), host
        named = [v.split(":")[0] for v in services[name]["volumes"] if not v.startswith(".")]
        assert named and set(named) <= set(data["volumes"]), name
    assert _host_path(services["prometheus"], "/etc/prometheus/prometheus.yml") == PROMETHEUS
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(services["grafana"], home) == DASHBOARD


def _health_port(service: dict[str, Any], role: str) -> int:
    env = service["environment"]
    return int(env["CATALENS_API_PORT"] if role == "api" else env["CATALENS_HEALTH_PORT"])


def test_prometheus_scrapes_every_catalens_service_at_its_metrics_port() -> None:
    services = compose()["services"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    scraped: dict[str, tuple[str, int]] = {}
    for job in config["scrape_configs"]:
        for discovery in job.get("dns_sd_configs", []):
            for name in discovery["names"]:
                scraped[name] = (job.get("metrics_path", "/metrics"), discovery["port"])
    for role in CATALENS:
        assert scraped.get(role) == ("/metrics", _health_port(services[role], role)), role
        # The workers' health check asks the same port.
        assert str(_health_port(services[role], role)) in " ".join(
            services[role]["healthcheck"]["test"]
        )
    [rule_file] = config["rule_files"]
    assert _host_path(services["prometheus"], rule_file) == ALERTS


def test_grafana_reads_the_composed_prometheus_through_the_datasource_the_panels_name() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    port = compose()["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert source["url"] == f"http://prometheus:{port}"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "catalens.yml").read_text())[
        "providers"
    ]
    grafana = compose()["services"]["grafana"]
    assert _host_path(grafana, provider["options"]["path"] + "/catalens.json") == DASHBOARD
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel


def test_every_dashboard_panel_has_queries_and_the_operators_questions_are_answered() -> None:
    data = dashboard()
    panels = data["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in (p for p in panels if p["type"] != "row"):
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and _balanced(target["expr"]), target
    by_title = {p["title"]: " ".join(dashboard_expressions(p)) for p in panels}
    wanted = {
        "Ingest rate": "catalens_records_total",
        "Consumer lag": "catalens_consumer_lag",
        "Freshness": "histogram_quantile(0.99, sum by (le) (rate(catalens_freshness_seconds_bucket",
        "Dead letters by reason": "sum by (reason) (rate(catalens_dead_letters_total",
        "Query latency": "histogram_quantile(0.99, sum by (le, route) "
        "(rate(catalens_request_seconds",
        "Error rates": 'catalens_request_seconds_count{status=~"5.."}',
    }
    for title, fragment in wanted.items():
        assert fragment in by_title[title], title


def _balanced(expr: str) -> bool:
    """Brackets of an expression pair up (string literals aside): PromQL's commonest typo."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in closing and (not stack or stack.pop() != closing[char]):
            return False
    return not stack


def _readme_anchors() -> set[str]:
    """GitHub's anchors of the README headings."""
    anchors = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_every_alert_rule_is_complete_and_links_a_runbook_in_the_readme() -> None:
    anchors = _readme_anchors()
    names = [rule["alert"] for rule in rules()]
    assert len(set(names)) == len(names)
    for rule in rules():
        assert _balanced(rule["expr"]), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), rule["alert"]
        page, anchor = notes["runbook_url"].split("#")
        assert page == "README.md" and anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"README.md has no heading {rule['alert']}"


def test_the_alerts_cover_lag_freshness_dead_letter_storms_and_workers_down() -> None:
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules()}
    assert "deriv(catalens_consumer_lag[10m])" in exprs["CatalensConsumerLagGrowing"]
    assert "rate(catalens_freshness_seconds_bucket" in exprs["CatalensFreshnessSLOBreach"]
    assert exprs["CatalensFreshnessSLOBreach"].endswith("> 60")
    assert "catalens_dead_letters_total" in exprs["CatalensDeadLetterShareHigh"]
    assert exprs["CatalensDeadLetterStorm"].endswith("(catalens_dead_letter_storm) == 1")
    assert exprs["CatalensWorkerDown"] == 'up{job=~"catalens-.*"} == 0'
    assert exprs["CatalensWorkerNotReady"] == "catalens_ready == 0"
    # The jobs the down-alert watches are the scrape jobs of the Catalens services.
    jobs = {j["job_name"] for j in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    assert {f"catalens-{role}" for role in CATALENS} <= jobs


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "histogram_quantile(0.99, sum by (le) (rate(catalens_freshness_seconds_bucket[5m])))",
            {"catalens_freshness_seconds"},
        ),
        (
            "sum(rate(catalens_request_seconds_count[5m])) / sum(catalens_search_seconds_sum)",
            {"catalens_request_seconds", "catalens_search_seconds"},
        ),
        (
            'sum by (reason) (rate(catalens_dead_letters_total{role="embedder"}[5m]))',
            {"catalens_dead_letters_total"},
        ),
        ('up{job=~"catalens_fake_.*"} == 0', set()),  # inside a string: not a metric
        ("catalens_ready == 0 and on() catalens_paused", {"catalens_ready", "catalens_paused"}),
    ],
)
def test_the_metrics_an_expression_reads_are_found_in_their_agreed_form(
    expr: str, names: set[str]
) -> None:
    assert promql_metrics(expr) == names


def test_exported_series_names_map_to_the_same_form() -> None:
    assert metric_name("catalens_sink_batch_size_count") == "catalens_sink_batch_size"
    assert metric_name("catalens_records_total") == "catalens_records_total"
    assert metric_name("catalens_consumer_lag") == "catalens_consumer_lag"


def test_the_dashboard_and_the_rules_read_only_agreed_metrics() -> None:
    referenced = referenced_metrics()
    assert not referenced - set(AGREED), f"not agreed: {sorted(referenced - set(AGREED))}"
    # Most of the agreed metrics are on the dashboard (this is not a vacuous check).
    assert len(referenced) >= len(AGREED) - 2, sorted(set(AGREED) - referenced)


def test_the_agreement_check_sees_a_name_nobody_agreed_on() -> None:
    rogue = json.loads(DASHBOARD.read_text())
    rogue["panels"][1]["targets"][0]["expr"] = "rate(catalens_made_up_total[5m])"
    found = set().union(*(promql_metrics(e) for e in dashboard_expressions(rogue)))
    assert found - set(AGREED) == {"catalens_made_up_total"}


def _promtool() -> str:
    """promtool checks PromQL for real; it ships with Prometheus (Debian: the
    ``prometheus`` package), not with Python."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CATALENS_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is missing (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def test_the_alert_rules_fire_and_stay_quiet_as_their_promtool_tests_say() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", str(ALERTS.parent / "alerts_test.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # As recording rules, promtool parses every expression; Grafana's interval variable
    # becomes what it stands for.
    expressions = [e.replace("$__rate_interval", "5m") for e in dashboard_expressions(dashboard())]
    recorded = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"panel:query{i}", "expr": e} for i, e in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(recorded))
    done = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(expressions)} rules found" in done.stdout
